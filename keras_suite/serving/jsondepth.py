"""A JSON nesting-depth limit checked before parsing.

The parsers downstream (json, numpy, the tensor converters) recurse once per level, so a
body of 100,000 `[` would exhaust the interpreter's stack: such bodies are refused with
INVALID_ARGUMENT before anything recurses. Real tensors are shallow (an image batch in a
row request is 5-7 levels deep).
"""

from __future__ import annotations

import re

import numpy as np

from keras_suite.serving.errors import invalid

DEFAULT_MAX_JSON_DEPTH = 64

_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1
_ESCAPED = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_KEEP = b'[]{}"'
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_STRING = re.compile(rb'"[^"]*"')  # a string, once escaped characters are gone


def check_json_depth(body: bytes, limit: int) -> None:
    """Raise INVALID_ARGUMENT when `body` nests arrays/objects deeper than `limit`."""
    if limit <= 0 or body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot be deeper than it has brackets: the common, free case
    if _depth(body) > limit:
        raise invalid(
            f"JSON Parse error: nesting deeper than {limit} levels (the server's "
            "--max_json_depth); send tensors as nested lists of at most that depth"
        )


def _depth(body: bytes) -> int:
    """Deepest bracket nesting outside strings, at C speed: drop escaped characters, keep
    only brackets and quotes (bytes.translate), drop strings (a regex), then the deepest
    running sum of +1 per opening and -1 per closing bracket (numpy)."""
    if b"\\" in body:
        body = _ESCAPED.sub(b"", body)
    brackets = _STRING.sub(b"", body.translate(None, _DROP))
    steps = _OPEN[np.frombuffer(brackets, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))
