"""Named feature flags: the parts of a worker that can be switched off one by one.

Each worker module declares `FEATURES = {"<feature>": "<what it does>"}`; the flag of a part is
`<worker>_<feature>_enabled` (the configured worker name, so `ethereum_ens_enabled` and
`base_ens_enabled` switch the same part of two chain workers). The manager seeds these rows with
their descriptions at boot, only where no row exists; the worker reads them with `Worker.flag`.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from pathlib import Path


def declared_features(module: str) -> dict[str, str]:
    """The `FEATURES` of a worker module, read from its source without importing it (the manager
    boots without loading every worker's libraries). Empty when it declares none or cannot be
    found: the worker itself will then report why it cannot start."""
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        tree = ast.parse(Path(origin).read_text()) if origin and origin.endswith(".py") else None
    except (ImportError, ValueError, OSError, SyntaxError):
        return {}
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "FEATURES":
            try:
                features = ast.literal_eval(value)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in features.items()} if isinstance(features, dict) else {}
    return {}


def feature_flag(worker: str, feature: str) -> str:
    return f"{worker}_{feature}_enabled"


def flag_owner(flag: str, workers: Iterable[str]) -> str | None:
    """The worker a flag belongs to (`<worker>_enabled` or `<worker>_<feature>_enabled`), the
    longest matching name winning, or None for a flag of no configured worker."""
    owners = [w for w in workers if flag == f"{w}_enabled" or (flag.startswith(f"{w}_") and flag.endswith("_enabled"))]
    return max(owners, key=len) if owners else None
