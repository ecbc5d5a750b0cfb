"""Strict JSON output: every file prm-jax writes parses under any JSON reader.

Python's `json` writes a non-finite float as a bare `NaN` / `Infinity`, which strict parsers
(JavaScript, jq, Go, Rust's serde) reject; here a NaN or infinite number is written as null.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def sanitize(obj: Any) -> Any:
    """Returns `obj` with numpy scalars and arrays made plain and non-finite floats made None."""
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return sanitize(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def read_jsonl(path) -> list[dict]:
    """Returns the objects of a jsonl file; a malformed line raises ValueError naming file and line."""
    out = []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line.rstrip("\r\n")))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: malformed JSON: {e.msg} (column {e.colno})") from None
    return out


def dumps(obj: Any, **kw) -> str:
    """Returns strict JSON text of `obj` (non-finite numbers as null)."""
    return json.dumps(sanitize(obj), allow_nan=False, **kw)


def dump(obj: Any, path: str, indent: int | None = 1) -> None:
    """Writes `obj` as strict JSON to `path` (its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(dumps(obj, indent=indent))


def write_jsonl(path, rows) -> None:
    """Writes one strict JSON object per line to `path` (its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(dumps(row) + "\n")


def load(path) -> Any:
    """Returns the JSON value in `path`; malformed JSON raises ValueError naming the file and line."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
