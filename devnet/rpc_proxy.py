"""A loopback JSON-RPC proxy in front of an EVM node (anvil): counts calls and injects faults.

anvil itself never fails and never rate-limits, so tests and the benchmark put this between a worker
and the node. It forwards each POST body unchanged and answers with the node's bytes, and on the way:

- counts HTTP requests and JSON-RPC calls (each element of a batch is a call), per method, so the
  benchmark can report RPC calls per cycle as a provider would bill them;
- injects the HTTP faults every stand-in has (`429` with Retry-After, `500`, `slow`, `truncated`,
  `disconnect`, from `devnet.http_stub`), plus `rpc_error` (a JSON-RPC error for one method, HTTP
  200, e.g. -32005 "limit exceeded") and `max_log_range` (eth_getLogs over more blocks than that is
  refused the way providers refuse it), for the behaviours of hosted providers.
"""

from __future__ import annotations

import collections
import json
import threading
import urllib.error
import urllib.request
from typing import Any

from devnet.http_stub import Request, Response, RpcFault, RpcFaults, StubServer


class RpcProxy(StubServer):
    """`RpcProxy(upstream_url)`: use `.url` as the worker's rpc_url."""

    name = "rpc-proxy"

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.upstream = upstream
        self.max_log_range: int | None = None
        self.rpc_faults = RpcFaults()
        self._count_lock = threading.Lock()
        self.http_posts = 0
        self.calls = 0
        self.methods: collections.Counter[str] = collections.Counter()

    def reset_counts(self) -> None:
        with self._count_lock:
            self.http_posts = self.calls = 0
            self.methods.clear()

    def inject_rpc_error(
        self, method: str | None = None, count: int = 1, code: int = -32005, message: str = "limit exceeded"
    ) -> None:
        """Answer the next `count` calls of `method` (None: any) with a JSON-RPC error."""
        self.rpc_faults.add(RpcFault(count, method, code, message))

    def clear_faults(self) -> None:
        super().clear_faults()
        self.rpc_faults.clear()
        self.max_log_range = None

    def _refusal(self, call: dict[str, Any]) -> dict[str, Any] | None:
        method = str(call.get("method"))
        fault = self.rpc_faults.take(method)
        if fault is not None:
            return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": fault.code, "message": fault.message}}
        if method == "eth_getLogs" and self.max_log_range is not None:
            params = call.get("params") or [{}]
            span = params[0] if params and isinstance(params[0], dict) else {}
            try:
                blocks = int(span["toBlock"], 16) - int(span["fromBlock"], 16) + 1
            except (KeyError, TypeError, ValueError):
                blocks = None
            if blocks is None or blocks > self.max_log_range:
                return {
                    "jsonrpc": "2.0",
                    "id": call.get("id"),
                    "error": {"code": -32602, "message": f"block range too large (max {self.max_log_range} blocks)"},
                }
        return None

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response.json({"error": "POST only"}, 405)
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        calls = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        with self._count_lock:
            self.http_posts += 1
            self.calls += len(calls)
            self.methods.update(str(c.get("method")) for c in calls if isinstance(c, dict))
        refusals = [self._refusal(c) if isinstance(c, dict) else None for c in calls]
        if any(refusals):
            forward = [c for c, r in zip(calls, refusals, strict=True) if r is None]
            answers = iter(self._forward_json(forward) if forward else [])
            merged = [r if r is not None else next(answers) for r in refusals]
            return Response.json(merged if isinstance(body, list) else merged[0])
        status, payload = self._forward(request.body)
        return Response(status, payload, {"Content-Type": "application/json"})

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        upstream = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(upstream, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _forward_json(self, calls: list[Any]) -> list[Any]:
        _, payload = self._forward(json.dumps(calls).encode())
        answer = json.loads(payload)
        return answer if isinstance(answer, list) else [answer]
