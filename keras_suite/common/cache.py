"""The suite's one process-wide cache, declared here so that apps stay stateless.

`evaluate`, `export` and `convert` of one run in one process (the Python API, the contract
test) would otherwise regenerate or re-read the same splits several times, and a GAN's
sampling would retrace its tf.function on every call. Apps ask this module instead of
keeping module-level dictionaries: each namespace holds ONE entry (the last key asked
for), so memory is bounded by one value per namespace and an old model or dataset is
released as soon as another one is asked for. Keys are compared with `is` first, then
`==`, so a model object can be a key. `clear()` empties everything (tests use it).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_lock = threading.Lock()
_last: dict[str, tuple[Any, Any]] = {}


def last_value(namespace: str, key: Any, build: Callable[[], Any]) -> Any:
    """`build()`'s value for `key`, reusing the one built for the same key just before."""
    with _lock:
        held = _last.get(namespace)
        if held is not None and (held[0] is key or _same(held[0], key)):
            return held[1]
    value = build()
    with _lock:
        _last[namespace] = (key, value)
    return value


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # objects whose == is elementwise or raises are only `is`-equal
        return False


def clear() -> None:
    with _lock:
        _last.clear()


def namespaces() -> list[str]:
    with _lock:
        return sorted(_last)
