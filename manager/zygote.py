"""The template process: imports the worker modules once, then forks ready-to-run workers.

Run as `python -u -m manager.zygote FD MODULE...` by manager.template, with FD one end of a
SOCK_SEQPACKET socket pair (one message per datagram). It opens no database or HTTP connection:
it only imports, so a fork shares nothing a worker must own alone.

Messages are dictionaries of plain values encoded with `marshal` (built in: the json module and
its `re` would be about 0.9 MiB more of the template's memory; both ends are this program and the
manager it was started by, on a private socket pair). Requests (manager → zygote) carry two file
descriptors attached (SCM_RIGHTS), the write
ends of the worker's stdout and stderr pipes, so the manager reads and prefixes the output exactly
as for an exec'd worker:

    {"id": 7, "module": "workers.evm", "env": {...}, "cwd": "/path"}

Replies (zygote → manager): `{"id": 7, "pid": 1234}` or `{"id": 7, "error": "..."}`, and for
every child that exits `{"exited": 1234, "status": <wait status>}` (the zygote is its parent and
reaps it). `{"retire": true}` makes the zygote stop taking requests and exit once its last child has
exited (a reload: running workers keep running, new ones come from a fresh template).

The forked child resets what must not be shared: a new session and process group, a parent-death
SIGTERM, default signal handlers, fresh random seeds, no logging handlers, the request's
environment and working directory; then it runs the module as `python -m MODULE` would.

The template imports only what serving needs (what only a forked child needs, it imports there):
its resident memory counts as the supervisor's.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import marshal
import mmap
import os
import runpy
import select
import signal
import socket
import sys

TYPE_CHECKING = False  # not `from typing import ...`: typing would be ~0.5 MiB of the template
if TYPE_CHECKING:
    from typing import Any

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the manager is gone; parent-death signals do the rest
        sock.send(marshal.dumps(message))


# One request per datagram, received into one reused buffer (recvmsg maps and frees a fresh 1 MiB
# each time); anonymous memory, so only the pages a request fills are ever touched.
_BUFFER = mmap.mmap(-1, 1 << 20)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    fds = array.array("i")
    size, ancdata, _flags, _addr = sock.recvmsg_into([_BUFFER], socket.CMSG_SPACE(2 * fds.itemsize))
    data = _BUFFER[:size]
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        return None, list(fds)
    return marshal.loads(data), list(fds)


def _become_worker(request: dict[str, Any], out_fd: int, err_fd: int, closing: list[int]) -> None:
    """In the forked child: reset, then run the module. Never returns."""
    code: int = 1
    try:
        os.setsid()  # its own session and process group, as for an exec'd worker
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        for fd in closing:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (devnull, out_fd, err_fd):
            os.close(fd)
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request.get("cwd") or ".")
        if "random" in sys.modules:  # a preloaded module imported it: its state is the template's
            sys.modules["random"].seed()
        import logging

        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        sys.argv = [request["module"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    children: set[int] = set()
    retired = False
    while not (retired and not children):
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 512)
        while children:  # reap and report every exited child
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            _send(sock, {"exited": pid, "status": status})
        if sock.fileno() not in readable or retired:
            continue
        try:
            request, fds = _receive(sock)
        except (OSError, ValueError):
            return
        if request is None:  # the manager closed its end
            return
        if request.get("retire"):
            retired = True
            continue
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            _send(sock, {"id": request.get("id"), "error": "expected two file descriptors"})
            continue
        pid = os.fork()
        if pid == 0:
            _become_worker(request, fds[0], fds[1], [sock.fileno(), wake_r, wake_w])
        for fd in fds:
            os.close(fd)
        children.add(pid)
        _send(sock, {"id": request["id"], "pid": pid})


def _preload(module: str) -> None:
    """Import what `python -m module` would import before running: a package's `__init__` (which
    imports the worker class and its libraries). A plain module *is* the program, so importing it
    would run it: only its spec is looked up (it must exist)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"no module named {module!r}")
    if spec.submodule_search_locations is not None:
        importlib.import_module(module)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the manager's to handle
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the manager, its children right after
    sock = socket.socket(fileno=int(sys.argv[1]))
    if os.getppid() == 1:
        return
    failed = {}
    for module in sys.argv[2:]:
        try:
            _preload(module)
        except BaseException as exc:  # that module is spawned by exec instead, which shows the error
            failed[module] = f"{type(exc).__name__}: {exc}"
    _send(sock, {"ready": True, "failed": failed})
    serve(sock)


if __name__ == "__main__":
    main()
