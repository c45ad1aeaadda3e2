"""A loopback Solana JSON-RPC node for tests and `--devnet`, serving `devnet.solana_ledger`.

No validator installs from the package registries, so this answers the standard JSON-RPC methods a
sync worker uses, in the exact shapes solders parses (solana-py's `AsyncClient` runs against it
unchanged): getHealth, getVersion, getSlot, getBlockHeight, getLatestBlockhash, getBalance,
getAccountInfo, getMultipleAccounts, getTokenAccountsByOwner, getSignaturesForAddress,
getTransaction, getMinimumBalanceForRentExemption. Bad parameters get the node's JSON-RPC errors
(-32602 and friends), and batches work.

Faults come from `devnet.http_stub` (HTTP 429 with Retry-After, 500, slow, truncated, disconnect),
plus `rpc_error`: an HTTP 200 answer carrying a JSON-RPC error (default -32005 "node is behind"),
optionally only for one method. All are also reachable over HTTP for a node in another process:
`POST /_devnet/fault {"kind": "rpc_error", "method": "getBalance", "count": 2}`. Other control
endpoints: `GET /_devnet/seed` (wallets, mints, NFTs), `POST /_devnet/transfer`,
`POST /_devnet/token_transfer`, `POST /_devnet/balance`.

Run: `python -m devnet.solana_rpc --port N` prints `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from devnet.http_stub import (
    Fault,
    Request,
    Response,
    RpcFault,
    RpcFaults,
    StubServer,
    add_server_arguments,
    retry_after_headers,
    serve_until_signal,
)
from devnet.solana_ledger import (
    TOKEN_PROGRAMS,
    LedgerError,
    LedgerTransaction,
    SolanaLedger,
    b58encode,
    metadata_address,
    rent_exempt_minimum,
    seeded_ledger,
)

API_VERSION = "2.1.0"
COMMITMENTS = ("processed", "confirmed", "finalized")
MAX_SIGNATURES_LIMIT = 1000
MAX_MULTIPLE_ACCOUNTS = 100

# JSON-RPC error codes used by real nodes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
NODE_UNHEALTHY = -32005
UNSUPPORTED_TX_VERSION = -32015
MIN_CONTEXT_SLOT_NOT_REACHED = -32016


class RpcError(Exception):
    """A JSON-RPC error answered in the `error` member (HTTP 200), as nodes do."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _params(params: Any, required: int, maximum: int) -> list[Any]:
    if params is None:
        params = []
    if not isinstance(params, list):
        raise RpcError(INVALID_PARAMS, "Invalid params: expected an array")
    if len(params) < required:
        raise RpcError(INVALID_PARAMS, f"Invalid params: expected at least {required} parameter(s)")
    if len(params) > maximum:
        raise RpcError(INVALID_PARAMS, f"Invalid params: expected at most {maximum} parameter(s)")
    return params + [None] * (maximum - len(params))


def _config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: configuration must be an object")
    commitment = value.get("commitment")
    if commitment is not None and commitment not in COMMITMENTS:
        raise RpcError(INVALID_PARAMS, f"Invalid params: unknown commitment `{commitment}`")
    return value


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, "Invalid param: expected a base-58 public key string")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from None


def _signature(value: Any) -> str:
    if not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, "Invalid param: expected a base-58 signature string")
    try:
        Signature.from_string(value)
    except ValueError:
        raise RpcError(INVALID_PARAMS, "Invalid param: Invalid") from None
    return value


class SolanaRpcServer(StubServer):
    """The Solana stand-in: JSON-RPC on `POST /` (any path, as providers put API keys in the path)."""

    name = "solana"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ledger: SolanaLedger | None = None) -> None:
        super().__init__(host, port)
        self.ledger = ledger if ledger is not None else seeded_ledger()
        self.rpc_faults = RpcFaults()
        self.methods: dict[str, Callable[[Any], Any]] = {
            "getHealth": self._get_health,
            "getVersion": self._get_version,
            "getSlot": self._get_slot,
            "getBlockHeight": self._get_block_height,
            "getLatestBlockhash": self._get_latest_blockhash,
            "getBalance": self._get_balance,
            "getAccountInfo": self._get_account_info,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getTokenAccountsByOwner": self._get_token_accounts_by_owner,
            "getSignaturesForAddress": self._get_signatures_for_address,
            "getTransaction": self._get_transaction,
            "getMinimumBalanceForRentExemption": self._get_minimum_balance,
        }

    # --- faults ----------------------------------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        path_prefix: str | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        *,
        method: str | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """The base faults, plus `rpc_error` (HTTP 200 with a JSON-RPC error; `method` narrows it)."""
        if kind != "rpc_error":
            return super().inject_fault(kind, count, path_prefix, retry_after, delay)
        fault = RpcFault(count, method, NODE_UNHEALTHY, "Node is behind by 42 slots")
        if code is not None:
            fault.code, fault.message, fault.data = int(code), message or "devnet fault", None
        elif message is not None:
            fault.message = message
        elif fault.code == NODE_UNHEALTHY:
            fault.data = {"numSlotsBehind": 42}
        self.rpc_faults.add(fault)
        return Fault("rpc_error", count, path_prefix)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.rpc_faults.clear()

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """429/500 with a JSON-RPC body, as hosted providers send them."""
        ident = _request_id(request.body)
        if fault.kind == "429":
            body = {"jsonrpc": "2.0", "error": {"code": 429, "message": "Too many requests"}, "id": ident}
            return Response.json(body, 429, retry_after_headers(fault))
        body = {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error"}, "id": ident}
        return Response.json(body, 500)

    # --- HTTP ------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        with self.ledger.lock:
            return {"slot": self.ledger.slot, "transactions": len(self.ledger.transactions)}

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response.json({"error": "Used HTTP Method is not allowed. POST or OPTIONS is required"}, 405)
        try:
            body = json.loads(request.body)
        except ValueError:
            return Response.json(_error_envelope(RpcError(PARSE_ERROR, "Parse error"), None))
        if isinstance(body, list):
            if not body:
                return Response.json(_error_envelope(RpcError(INVALID_REQUEST, "Invalid request"), None))
            return Response.json([self._call(item) for item in body])
        return Response.json(self._call(body))

    def _call(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0" or not isinstance(item.get("method"), str):
            ident = item.get("id") if isinstance(item, dict) else None
            return _error_envelope(RpcError(INVALID_REQUEST, "Invalid request"), ident)
        ident, method = item.get("id"), item["method"]
        try:
            fault = self.rpc_faults.take(method)
            if fault is not None:
                raise RpcError(fault.code, fault.message, fault.data)
            handler = self.methods.get(method)
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            with self.ledger.lock:
                result = handler(item.get("params"))
        except RpcError as err:
            return _error_envelope(err, ident)
        except LedgerError as err:
            return _error_envelope(RpcError(INVALID_PARAMS, f"Invalid params: {err}"), ident)
        return {"jsonrpc": "2.0", "result": result, "id": ident}

    def handle_control(self, request: Request) -> Response | None:
        path, method = request.path.rstrip("/"), request.method
        if path == "/_devnet/fault" and method == "POST":
            spec = request.json()
            if isinstance(spec, dict) and spec.get("kind") == "rpc_error":
                try:
                    self.inject_fault(
                        "rpc_error",
                        int(spec.get("count", 1)),
                        method=spec.get("method"),
                        code=spec.get("code"),
                        message=spec.get("message"),
                    )
                except (TypeError, ValueError) as err:
                    return Response.json({"error": str(err)}, 400)
                return Response.json({"rpc_faults": [asdict(f) for f in self.rpc_faults.pending()]})
            return None  # the base handles the HTTP-level kinds
        if path == "/_devnet/seed" and method == "GET":
            return Response.json(self.seed_summary())
        actions: dict[str, Callable[[dict[str, Any]], str | None]] = {
            "/_devnet/transfer": lambda s: self.ledger.transfer_sol(s["from"], s["to"], int(s["lamports"])),
            "/_devnet/token_transfer": lambda s: self.ledger.transfer_token(
                s["from"], s["to"], s["mint"], int(s["amount"])
            ),
            "/_devnet/balance": lambda s: self.ledger.set_balance(self.ledger.resolve(s["pubkey"]), int(s["lamports"])),
        }
        if path in actions and method == "POST":
            spec = request.json()
            try:
                with self.ledger.lock:
                    signature = actions[path](spec)
            except (KeyError, TypeError, ValueError) as err:  # LedgerError is a ValueError
                return Response.json({"error": f"{type(err).__name__}: {err}"}, 400)
            return Response.json({"signature": signature, "slot": self.ledger.slot})
        return None

    def seed_summary(self) -> dict[str, Any]:
        """What the ledger holds, for tests and for the manager's devnet wiring."""
        ledger = self.ledger
        with ledger.lock:
            return {
                "slot": ledger.slot,
                "wallets": [
                    {
                        "label": w.label,
                        "pubkey": str(w.pubkey),
                        "tracked": w.tracked,
                        "lamports": ledger.balance(w.pubkey),
                    }
                    for w in ledger.wallets.values()
                ],
                "mints": [
                    {
                        "address": str(m.address),
                        "symbol": m.symbol,
                        "name": m.name,
                        "decimals": m.decimals,
                        "program": str(m.program),
                        "supply": m.supply,
                        "metadata": str(metadata_address(m.address))
                        if metadata_address(m.address) in ledger.metadata
                        else None,
                    }
                    for m in ledger.mints.values()
                ],
                "token_accounts": [
                    {
                        "address": str(a.address),
                        "owner": str(a.owner),
                        "mint": str(a.mint.address),
                        "amount": a.amount,
                        "program": str(a.program),
                    }
                    for a in ledger.token_accounts.values()
                ],
                "transactions": len(ledger.transactions),
            }

    # --- methods (called with the ledger locked) -------------------------------------------------

    def _context(self, value: Any) -> dict[str, Any]:
        return {"context": {"slot": self.ledger.slot, "apiVersion": API_VERSION}, "value": value}

    def _check_min_slot(self, config: dict[str, Any]) -> None:
        wanted = config.get("minContextSlot")
        if wanted is not None and int(wanted) > self.ledger.slot:
            raise RpcError(
                MIN_CONTEXT_SLOT_NOT_REACHED,
                "Minimum context slot has not been reached",
                {"contextSlot": self.ledger.slot},
            )

    def _get_health(self, params: Any) -> str:
        _params(params, 0, 0)
        return "ok"

    def _get_version(self, params: Any) -> dict[str, Any]:
        _params(params, 0, 0)
        return {"solana-core": API_VERSION, "feature-set": 1_725_507_508}

    def _get_slot(self, params: Any) -> int:
        (config,) = _params(params, 0, 1)
        self._check_min_slot(_config(config))
        return self.ledger.slot

    def _get_block_height(self, params: Any) -> int:
        (config,) = _params(params, 0, 1)
        self._check_min_slot(_config(config))
        return self.ledger.slot - 12_000_000  # block height trails the slot by the skipped slots

    def _get_latest_blockhash(self, params: Any) -> dict[str, Any]:
        (config,) = _params(params, 0, 1)
        self._check_min_slot(_config(config))
        height = self._get_block_height([])
        return self._context({"blockhash": str(self.ledger.blockhash()), "lastValidBlockHeight": height + 150})

    def _get_minimum_balance(self, params: Any) -> int:
        size, config = _params(params, 1, 2)
        _config(config)
        if not isinstance(size, int) or size < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: data length must be a non-negative integer")
        return rent_exempt_minimum(size)

    def _get_balance(self, params: Any) -> dict[str, Any]:
        key, config = _params(params, 1, 2)
        self._check_min_slot(_config(config))
        return self._context(self.ledger.balance(_pubkey(key)))

    def _get_account_info(self, params: Any) -> dict[str, Any]:
        key, config = _params(params, 1, 2)
        config = _config(config)
        self._check_min_slot(config)
        return self._context(self._encode_account(_pubkey(key), config))

    def _get_multiple_accounts(self, params: Any) -> dict[str, Any]:
        keys, config = _params(params, 1, 2)
        config = _config(config)
        self._check_min_slot(config)
        if not isinstance(keys, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: expected an array of public keys")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise RpcError(INVALID_PARAMS, f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        return self._context([self._encode_account(_pubkey(k), config) for k in keys])

    def _encode_account(self, key: Pubkey, config: dict[str, Any]) -> dict[str, Any] | None:
        view = self.ledger.account(key)
        if view is None:
            return None
        encoding = config.get("encoding", "binary")  # a node's legacy default: a bare base-58 string
        data = view.data
        data_slice = config.get("dataSlice")
        if data_slice is not None:
            if encoding == "jsonParsed":
                raise RpcError(
                    INVALID_PARAMS, "Sliced account data can only be encoded using binary (base 58) or base64 encoding."
                )
            try:
                offset, length = int(data_slice["offset"]), int(data_slice["length"])
            except (KeyError, TypeError, ValueError):
                raise RpcError(INVALID_PARAMS, "Invalid params: dataSlice needs offset and length") from None
            data = data[offset : offset + length]
        if encoding == "jsonParsed" and view.parsed is not None:
            encoded: Any = {"program": view.program_name, "parsed": view.parsed, "space": len(view.data)}
        elif encoding in ("base64", "jsonParsed"):  # jsonParsed falls back to base64 for unparsed data
            encoded = [base64.b64encode(data).decode(), "base64"]
        elif encoding in ("base58", "binary"):
            if len(data) > 128:
                raise RpcError(
                    INVALID_PARAMS,
                    "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.",
                )
            encoded = [b58encode(data), "base58"] if encoding == "base58" else b58encode(data)
        else:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding `{encoding}`")
        return {
            "lamports": view.lamports,
            "owner": str(view.owner),
            "executable": view.executable,
            "rentEpoch": 18446744073709551615,
            "space": len(view.data),
            "data": encoded,
        }

    def _get_token_accounts_by_owner(self, params: Any) -> dict[str, Any]:
        owner, selector, config = _params(params, 2, 3)
        config = _config(config)
        self._check_min_slot(config)
        owner_key = _pubkey(owner)
        if not isinstance(selector, dict) or len(selector) != 1 or not ({"mint", "programId"} & selector.keys()):
            raise RpcError(INVALID_PARAMS, 'Invalid params: expected {"mint": …} or {"programId": …}')
        if "programId" in selector:
            program = _pubkey(selector["programId"])
            if program not in TOKEN_PROGRAMS:
                raise RpcError(INVALID_PARAMS, "Invalid param: unrecognized Token program id")
            accounts = self.ledger.token_accounts_of(owner_key, program=program)
        else:
            mint = _pubkey(selector["mint"])
            if mint not in self.ledger.mints:
                raise RpcError(INVALID_PARAMS, "Invalid param: could not find mint")
            accounts = self.ledger.token_accounts_of(owner_key, mint=mint)
        return self._context(
            [{"pubkey": str(acc.address), "account": self._encode_account(acc.address, config)} for acc in accounts]
        )

    def _get_signatures_for_address(self, params: Any) -> list[dict[str, Any]]:
        key, config = _params(params, 1, 2)
        config = _config(config)
        self._check_min_slot(config)
        limit = config.get("limit")
        limit = MAX_SIGNATURES_LIMIT if limit is None else limit
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNATURES_LIMIT:
            raise RpcError(INVALID_PARAMS, f"Invalid limit; max {MAX_SIGNATURES_LIMIT}")
        history = self.ledger.signatures_for(_pubkey(key))  # newest first
        before, until = config.get("before"), config.get("until")
        if before is not None:
            before = _signature(before)
            index = next((i for i, tx in enumerate(history) if tx.signature == before), None)
            # A node that does not know `before` answers an empty page (Agave's blockstore does so).
            history = history[index + 1 :] if index is not None else []
        if until is not None:
            until = _signature(until)
            index = next((i for i, tx in enumerate(history) if tx.signature == until), None)
            history = history[:index] if index is not None else history  # unknown `until`: no lower bound
        return [
            {
                "signature": tx.signature,
                "slot": tx.slot,
                "err": tx.err,
                "memo": None,
                "blockTime": tx.block_time,
                "confirmationStatus": "finalized",
            }
            for tx in history[:limit]
        ]

    def _get_transaction(self, params: Any) -> dict[str, Any] | None:
        signature, config = _params(params, 1, 2)
        config = _config(config if not isinstance(config, str) else {"encoding": config})
        tx = self.ledger.by_signature.get(_signature(signature))
        encoding = config.get("encoding", "json")
        if encoding not in ("json", "jsonParsed", "base64", "base58"):
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported encoding `{encoding}`")
        if encoding != "json":
            raise RpcError(INVALID_PARAMS, f"Invalid params: the devnet serves only `json` encoding, not `{encoding}`")
        if tx is None:
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        if tx.version == 0 and (max_version is None or max_version < 0):
            raise RpcError(
                UNSUPPORTED_TX_VERSION,
                "Transaction version (0) is not supported by the requesting client. Please try the request "
                'again with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        return _encode_transaction(tx, include_version=max_version is not None)


def _encode_transaction(tx: LedgerTransaction, *, include_version: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "slot": tx.slot,
        "blockTime": tx.block_time,
        "meta": tx.meta,
        "transaction": tx.transaction,
    }
    if include_version:  # nodes omit `version` for clients that did not say which they support
        out["version"] = tx.version
    return out


def _error_envelope(err: RpcError, ident: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": err.payload(), "id": ident}


def _request_id(body: bytes) -> Any:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed.get("id") if isinstance(parsed, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devnet.solana_rpc --port N`: serve the seeded devnet until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devnet.solana_rpc", description=main.__doc__)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    return serve_until_signal(SolanaRpcServer(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
