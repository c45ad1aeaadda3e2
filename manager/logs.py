"""Worker output: echoed on the manager's output with a `[name] ` prefix (or as JSON lines),
and the last lines of each worker kept in memory for the API and the console.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC with a Z, the format of every API timestamp."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LogLine:
    at: float
    stream: str  # stdout | stderr | manager
    text: str

    def as_json(self) -> dict[str, str | None]:
        return {"at": iso(self.at), "stream": self.stream, "text": self.text}


class OutputEcho:
    """Writes worker and manager lines to the manager's own output in one format."""

    def __init__(self, fmt: str = "text", out: TextIO | None = None) -> None:
        self.fmt = fmt
        self.out = out or sys.stdout

    def write(self, worker: str, line: LogLine) -> None:
        if self.fmt == "json":
            record = {"worker": worker, **line.as_json()}
            text = json.dumps(record, ensure_ascii=False)
        else:
            text = f"[{worker}] {line.text}"
        try:
            self.out.write(text + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass


class WorkerLog:
    """The last `capacity` lines of one worker's output (and the manager's notes about it)."""

    def __init__(
        self, worker: str, echo: OutputEcho, capacity: int = 300, scrub: Callable[[str], str] | None = None
    ) -> None:
        self.worker = worker
        self._echo = echo
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._scrub = scrub or (lambda text: text)

    def add(self, stream: str, text: str) -> None:
        line = LogLine(time.time(), stream, self._scrub(text))
        self._lines.append(line)
        self._echo.write(self.worker, line)

    def recent(self, limit: int = 100) -> list[LogLine]:
        lines = list(self._lines)
        return lines[-limit:]
