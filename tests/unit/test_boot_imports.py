"""The manager's memory at rest: what the boot imports. The console (Jinja2, admin/) and Prometheus's
client are loaded on their first request (manager.http.console, manager.http.health), so a fleet
nobody browses or scrapes never holds them. Checked in a fresh interpreter that builds the app as
the boot does; tests/e2e/test_console.py and tests/integration/test_api.py show both still serve."""

from __future__ import annotations

import json
import subprocess
import sys

BOOT = """
import json, sys
import manager.app, manager.http.server
from manager.auth import Auth
from manager.config import Config
from manager.http import Services, create_app

class View:
    def status(self):
        return []

auth, _ = Auth.from_environment()
create_app(Services(View(), View(), None, auth, Config(), {}))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_boot_leaves_the_console_and_prometheus_to_their_first_request():
    out = subprocess.run([sys.executable, "-c", BOOT], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert {"fastapi", "uvicorn", "psycopg", "pydantic"} <= loaded  # the boot itself was imported
    assert not loaded & {"admin", "jinja2", "markupsafe", "prometheus_client"}
