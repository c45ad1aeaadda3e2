"""Benchmarks: each module measures one thing and reports real figures plus a same-run baseline."""
