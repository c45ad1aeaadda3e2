"""`python -m bench [name ...]`: run the benchmarks (all by default) and print their tables."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["supervision", "peers", "ingest", "chains", "search", "failover", "claims", "lease_cost"]


def main() -> None:
    chosen = sys.argv[1:] or BENCHMARKS
    for name in chosen:
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
