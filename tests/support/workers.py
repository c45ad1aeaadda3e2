"""Running one worker as a real process, exactly as the manager would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.manager import ROOT


def start_worker(name: str, url: str, config: dict[str, Any], log_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m workers.<name>` with WORKER_NAME, DATABASE_URL and WORKER_CONFIG (output in log_dir)."""
    env = {**os.environ, "WORKER_NAME": name, "DATABASE_URL": url, "WORKER_CONFIG": json.dumps(config)}
    with (log_dir / "worker.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", f"workers.{name}"], cwd=ROOT, env=env, stdout=log, stderr=log)
