"""Unknown query parameters on API routes are a 422, not silently ignored.

A typo in a parameter that changes what comes back (`?limt=5`, `?window=7d` on a route that takes
`minutes`) would otherwise answer 200 with the defaults, and the caller would believe it got what it
asked for. So every `/api/` route accepts exactly the query parameters it declares; anything else is
refused with the route's list. The console's pages (`/workers...`) are left alone: browsers and
links add their own parameters there.

It is one dependency given to every API router (`create_app`), which reads the matched route's
declared parameters, so a route added later is covered without a line of its own.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

_DECLARED: dict[int, frozenset[str]] = {}  # id(dependant) -> its query parameter names


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(request: Request) -> frozenset[str] | None:
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return None
    key = id(dependant)
    if key not in _DECLARED:
        _DECLARED[key] = frozenset(_query_names(dependant))
    return _DECLARED[key]


async def reject_unknown_query(request: Request) -> None:
    """Router dependency: 422 when the query holds a parameter the route does not declare."""
    if not request.query_params:
        return
    allowed = _declared(request)
    if allowed is None:
        return
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", key[:64]),
                    "msg": f"unknown query parameter; this route takes: {takes}",
                    "type": "extra_forbidden",
                }
                for key in unknown[:10]
            ]
        )
