"""The health of a serving process's parts, for `/healthz`: each part is `ok`, `degraded` (with a one-line
`detail`) or `disabled` (not configured); the process is `degraded` when any part is."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

OK = "ok"
DEGRADED = "degraded"
DISABLED = "disabled"
MAX_DETAIL_CHARS = 200


def probe(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `check` (a cheap query of one part that returns its state); `ok` with that state, or `degraded` with
    what went wrong (logged with its traceback) when it raises."""
    try:
        return {"status": OK, "detail": None, **check()}
    except Exception as exc:  # a health check reports any failure of the part it probes
        log.warning("health check of %s failed", name, exc_info=True)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        return {"status": DEGRADED, "detail": detail[:MAX_DETAIL_CHARS]}


def disabled(detail: str) -> dict[str, Any]:
    """A part this process is not configured to use."""
    return {"status": DISABLED, "detail": detail}


def overall(components: Mapping[str, Mapping[str, Any]]) -> str:
    """`degraded` when any component is, else `ok`."""
    return DEGRADED if any(c["status"] == DEGRADED for c in components.values()) else OK
