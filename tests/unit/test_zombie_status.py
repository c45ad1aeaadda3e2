"""A forked worker's exit status is read from /proc while it is a zombie (its template has not
reaped it yet), and never once it is reaped: then the pid may be another process's."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from manager.template import _zombie_status


def _exited(proc: subprocess.Popen[bytes]) -> int:
    pidfd = os.pidfd_open(proc.pid)
    assert select.select([pidfd], [], [], 30)[0], "the child did not exit"
    return pidfd


def test_a_killed_child_reads_as_killed_until_it_is_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGKILL)
    pidfd = _exited(proc)
    try:
        status = _zombie_status(proc.pid, pidfd)
        assert status is not None and os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        proc.wait()
        assert _zombie_status(proc.pid, pidfd) is None
    finally:
        os.close(pidfd)


def test_a_crash_reads_as_its_code_and_a_clean_exit_is_left_to_the_report() -> None:
    for code, expected in ((3, 3), (0, None)):
        proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        pidfd = _exited(proc)
        try:
            status = _zombie_status(proc.pid, pidfd)
            assert (None if status is None else os.waitstatus_to_exitcode(status)) == expected
        finally:
            os.close(pidfd)
            proc.wait()
