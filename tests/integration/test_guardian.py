"""The orphan guardian script on its own (manager/guardian.sh): what it signals when its pipe closes.

Real processes in their own sessions stand in for workers; test_orphans.py covers the same
guardian through a SIGKILLed manager.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from manager.process import GUARDIAN_ARGV
from tests.support.waiting import wait_for

GRACE_TICKS = "4"  # 0.2 s from SIGTERM to SIGKILL, to keep the test short


def _group(script: str) -> subprocess.Popen[bytes]:
    """A process group of its own (like a worker's), led by `sh -c script`."""
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


@pytest.fixture
def groups():
    started: list[subprocess.Popen[bytes]] = []

    def start(script: str) -> subprocess.Popen[bytes]:
        started.append(_group(script))
        return started[-1]

    yield start
    for proc in started:
        if _alive(proc):
            proc.kill()
        proc.wait(5)


def _guardian(lines: list[str], *, close: bool = True) -> subprocess.Popen[bytes]:
    guardian = subprocess.Popen([*GUARDIAN_ARGV, GRACE_TICKS], stdin=subprocess.PIPE, start_new_session=True)
    assert guardian.stdin is not None
    guardian.stdin.write("".join(f"{line}\n" for line in lines).encode())
    guardian.stdin.flush()
    if close:
        guardian.stdin.close()
    return guardian


def test_a_closed_pipe_ends_every_known_group_and_only_those(groups):
    plain = groups("sleep 300")
    stubborn = groups("trap '' TERM; sleep 300 & wait")  # only SIGKILL ends it
    forgotten = groups("sleep 300")
    guardian = _guardian(
        [
            f"+{plain.pid}",
            f"+{stubborn.pid}",
            f"+{forgotten.pid}",
            f"-{forgotten.pid}",
            "+12x",
            "hello",
            f"+{plain.pid}",
        ]
    )
    assert guardian.wait(5) == 0
    assert not _alive(plain) and plain.returncode == -15  # SIGTERM first
    assert not _alive(stubborn) and stubborn.returncode == -9  # then SIGKILL for what stayed
    assert _alive(forgotten)  # its worker exited (`-PGID`): the group is not the guardian's any more


def test_bye_leaves_every_group_alone(groups):
    worker = groups("sleep 300")
    guardian = _guardian([f"+{worker.pid}", "bye"], close=False)
    assert guardian.wait(5) == 0  # it exits at `bye`, before the pipe closes
    assert guardian.stdin is not None
    guardian.stdin.close()
    assert _alive(worker)


def test_sigint_does_not_stop_it(groups):
    worker = groups("sleep 300")
    guardian = _guardian([f"+{worker.pid}"], close=False)
    wait_for(lambda: _ignores(guardian.pid, signal.SIGINT), 5, what="the guardian to ignore SIGINT")
    guardian.send_signal(signal.SIGINT)
    assert guardian.stdin is not None
    guardian.stdin.close()
    assert guardian.wait(5) == 0  # not -SIGINT: it lived on, and did its job when the pipe closed
    wait_for(lambda: not _alive(worker), 5, what="the worker's group to be ended")


def _ignores(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(mask & (1 << (sig - 1)))
