"""Installs the peers `bench peers` compares against, pinned, into `.tools/` (once).

supervisor and circus go into their own virtualenv (`.tools/peers-venv`), PM2 into `.tools/peers`
through npm, so none of them touches the project's environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
VENV = TOOLS / "peers-venv"
NPM_PREFIX = TOOLS / "peers"

PYTHON_PEERS = {"supervisor": "4.3.0", "circus": "0.19.0"}
NODE_PEERS = {"pm2": "7.0.4"}


def bin_path(name: str) -> Path:
    return VENV / "bin" / name


def pm2_path() -> Path:
    return NPM_PREFIX / "node_modules" / ".bin" / "pm2"


def ensure_installed() -> None:
    wanted = {f"{k}=={v}" for k, v in PYTHON_PEERS.items()}
    marker = VENV / ".installed.json"
    if not (marker.exists() and set(json.loads(marker.read_text())) == wanted):
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        subprocess.run([*pip, *sorted(wanted)], check=True)
        marker.write_text(json.dumps(sorted(wanted)))
    if not pm2_path().exists():
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        packages = [f"{k}@{v}" for k, v in NODE_PEERS.items()]
        subprocess.run(
            ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--loglevel=error", *packages],
            check=True,
        )
