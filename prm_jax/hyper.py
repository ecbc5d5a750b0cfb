"""Sweep algebra for `get_hyper(h)`: a sweep is a list of points, a point a dict of config overrides.

An experiment file may define, beside `get_config(arg)`:

    def get_hyper(h):
        return h.product([
            h.sweep("loss.beta", [0.01, 0.05, 0.2]),
            h.sweep("train.seed", [0, 1]),
        ])

`h` is this module. Keys are dotted config paths (a leading `config.` is accepted and dropped), values
are plain Python values; `prm-jax sweep` turns each point into `--config.KEY=VALUE` overrides.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

Point = dict[str, Any]


def _key(name: str) -> str:
    """Returns the dotted key without a leading `config.`; rejects empty keys."""
    if not isinstance(name, str) or not name.strip(". "):
        raise ValueError(f"sweep key must be a non-empty dotted name, got {name!r}")
    return name[len("config.") :] if name.startswith("config.") else name


def fixed(name: str, value: Any) -> list[Point]:
    """Returns a one-point sweep setting `name` to `value`."""
    return [{_key(name): value}]


def sweep(name: str, values: Iterable[Any]) -> list[Point]:
    """Returns one point per value of `name`, in order."""
    values = list(values)
    if not values:
        raise ValueError(f"sweep over {name!r} has no values")
    key = _key(name)
    return [{key: v} for v in values]


def _merge(points: Sequence[Point]) -> Point:
    """Returns the union of several points; the same key twice is an error (it would be ambiguous)."""
    out: Point = {}
    for p in points:
        for k, v in p.items():
            if k in out:
                raise ValueError(f"key {k!r} is set by two factors of the same product/zip")
            out[k] = v
    return out


def product(sweeps: Sequence[list[Point]]) -> list[Point]:
    """Returns the Cartesian product of sweeps (the last varies fastest)."""
    sweeps = [list(s) for s in sweeps]
    return [_merge(combo) for combo in itertools.product(*sweeps)]


def zipit(sweeps: Sequence[list[Point]]) -> list[Point]:
    """Returns the sweeps zipped point by point; all must have the same length."""
    sweeps = [list(s) for s in sweeps]
    lengths = {len(s) for s in sweeps}
    if len(lengths) > 1:
        raise ValueError(f"zip of sweeps with different lengths {sorted(lengths)}")
    return [_merge(combo) for combo in zip(*sweeps)]


def chain(sweeps: Sequence[list[Point]]) -> list[Point]:
    """Returns the sweeps one after another (a union of separate sweeps)."""
    return [dict(p) for s in sweeps for p in s]


def validate(points: Sequence[Point]) -> list[Point]:
    """Returns the points as a list after checking them: non-empty, dicts of str keys, no duplicates."""
    points = list(points)
    if not points:
        raise ValueError("get_hyper returned no points")
    seen = set()
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise ValueError(f"sweep point {i} is {type(p).__name__}, expected a dict of overrides")
        for k in p:
            _key(k)
        frozen = tuple(sorted((k, repr(v)) for k, v in p.items()))
        if frozen in seen:
            raise ValueError(f"sweep point {i} {p} appears twice")
        seen.add(frozen)
    return [{_key(k): v for k, v in p.items()} for p in points]
