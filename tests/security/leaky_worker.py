"""A worker that leaks every way a careless one could: it prints its secret plainly, URL-encoded
and base64-encoded, echoes its RPC URL, and fails with an error quoting its key, so the secrets
suite can check that none of it reaches the manager's output, API, pages or tables.

Run as `python -m tests.security.leaky_worker` (the manager does, from a test config).
"""

from __future__ import annotations

import base64
import os
from urllib.parse import quote

from workers.base import CycleResult, Worker
from workers.settings import WorkerSettings


class LeakySettings(WorkerSettings):
    rpc_url: str = ""


class LeakyWorker(Worker[int]):
    settings_model = LeakySettings
    settings: LeakySettings

    def run_cycle(self) -> CycleResult:
        key = os.environ.get("LEAKY_API_KEY", "")
        others = sorted(k for k in os.environ if k in ("OTHER_WORKER_KEY", "ADMIN_TOKEN", "VIEWER_TOKEN"))
        print(f"env I was given beyond my own: {others}", flush=True)
        print(f"plain {key} encoded {quote(key, safe='')} b64 {base64.b64encode(key.encode()).decode()}", flush=True)
        print(f"basic auth {base64.b64encode(f'user:{key}'.encode()).decode()}", flush=True)
        print(f"rpc {self.settings.rpc_url}", flush=True)
        raise RuntimeError(f"upstream refused key {key} at {self.settings.rpc_url}")


if __name__ == "__main__":
    LeakyWorker.main()
