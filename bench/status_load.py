"""A separate load-generating process: hammers one URL with C concurrent keep-alive clients for
D seconds and prints latencies as JSON. Run: python -m bench.status_load URL CONCURRENCY SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def _client(url: str, until: float, latencies: list[float], errors: list[int]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors.append(response.status_code)


async def run(url: str, concurrency: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[int] = []
    until = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_client(url, until, latencies, errors) for _ in range(concurrency)))
    return {"latencies": latencies, "errors": len(errors), "elapsed": time.monotonic() - started}


if __name__ == "__main__":
    target, conc, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(run(target, conc, secs))))
