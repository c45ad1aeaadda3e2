"""Healdec: decides whether each worker is healthy, and when it must be restarted or killed."""
