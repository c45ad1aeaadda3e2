"""A worker's supervision state and the transitions allowed between states, in one place."""

from __future__ import annotations

from enum import StrEnum


class WorkerState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"  # its feature flag is false
    BACKOFF = "backoff"  # crashed; waiting to restart
    STOPPING = "stopping"
    STOPPED = "stopped"  # exited 0, or stopped by an operator
    FAILED = "failed"  # restart budget spent; waits for an operator
    DISABLED = "disabled"  # `enabled: false` in the config: never started


S = WorkerState
ALLOWED: dict[WorkerState, frozenset[WorkerState]] = {
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED, S.STARTING}),
    S.STOPPING: frozenset({S.STOPPED, S.PAUSED, S.STARTING, S.BACKOFF, S.FAILED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.PAUSED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED, S.PAUSED}),
    S.STOPPED: frozenset({S.STARTING, S.PAUSED}),
    S.PAUSED: frozenset({S.STARTING, S.STOPPED}),
    S.DISABLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(current: WorkerState, target: WorkerState) -> None:
    """Raise if the supervisor tries a transition the state machine does not allow (a bug)."""
    if target != current and target not in ALLOWED[current]:
        raise IllegalTransition(f"{current} → {target} is not an allowed transition")
