"""An honest OpenAPI: schemathesis (the real tool, pinned in the test extras) runs every check
against a live manager with the admin token, with a bounded number of examples, and must report
zero failures. Its output is attached to the assertion so a failure says which route and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.manager import TOKEN, example_worker

MAX_EXAMPLES = 4  # per operation: enough to find a 500 or an undocumented status, quick to run


@pytest.mark.timeout(300)  # ~40 s on an idle machine; generous for a loaded CI box
def test_schemathesis_finds_nothing(boot_manager, tmp_path: Path):
    m = boot_manager({"counter": example_worker(interval_ms=1000)}, env={"VIEWER_TOKEN": "viewer-token-for-st"})
    # the first search imports the search code (numpy): do it before the clock of any request runs
    assert m.api("GET", "/api/search?q=warm").status_code == 200
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{m.base_url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "12",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert m.proc is not None and m.proc.poll() is None  # the manager survived it
