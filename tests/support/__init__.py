"""Helpers shared by the test suites: a real Postgres, and a handle on a running manager."""
