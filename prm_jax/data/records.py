"""The one record model every data source is read into, with validation and bad-input accounting.

A `Record` is one (problem, solution steps) pair with optional per-step labels in [0, 1] (soft
labels allowed, `None` = unlabelled), an optional outcome label, an optional reference answer and,
for PAV, the prover's Q after each step (`q_values`) and from the bare question (`v0`).

Readers raise `DataError` naming the file and line of bad input; with `skip_bad=True` they count the
skipped records in a `SkipCounter` instead (nothing is dropped silently).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Any


class DataError(ValueError):
    """Bad input; the message names the file and line (1-based) when known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message)


@dataclasses.dataclass
class Record:
    """One solution to one problem, split into steps, with whatever labels its source has."""

    problem: str
    steps: list[str]
    step_labels: list[float | None] | None = None
    outcome: float | None = None
    answer: str | None = None
    source: str = ""
    id: str = ""
    q_values: list[float] | None = None
    v0: float | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def validate(self, *, allow_empty_steps: bool = False) -> "Record":
        """Returns self; raises DataError (no location) on an inconsistent record."""
        if not isinstance(self.problem, str) or not self.problem.strip():
            raise DataError("empty or non-string problem")
        if not isinstance(self.steps, list) or not all(isinstance(s, str) for s in self.steps):
            raise DataError("steps must be a list of strings")
        if not self.steps and not allow_empty_steps:
            raise DataError("empty step list")
        if self.step_labels is not None:
            if len(self.step_labels) != len(self.steps):
                raise DataError(f"{len(self.step_labels)} step labels for {len(self.steps)} steps")
            for i, lab in enumerate(self.step_labels):
                if lab is not None:
                    _check_unit(lab, f"step label {i}")
        if self.outcome is not None:
            _check_unit(self.outcome, "outcome")
        if self.q_values is not None:
            if len(self.q_values) != len(self.steps):
                raise DataError(f"{len(self.q_values)} q values for {len(self.steps)} steps")
            for i, q in enumerate(self.q_values):
                _check_unit(q, f"q value {i}")
        if self.v0 is not None:
            _check_unit(self.v0, "v0")
        return self

    def first_error(self) -> int | None:
        """Returns the index of the first step labelled < 0.5, -1 if all labelled >= 0.5, None if unlabelled."""
        if self.step_labels is None or all(lab is None for lab in self.step_labels):
            return None
        for i, lab in enumerate(self.step_labels):
            if lab is not None and lab < 0.5:
                return i
        return -1

    def to_json(self) -> str:
        """Returns the record as one JSON line (the ArrayRecord storage form)."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Record":
        """Returns the record stored by `to_json`."""
        d = json.loads(text)
        return cls(**d)


def _check_unit(x: Any, name: str) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(float(x)):
        raise DataError(f"{name} must be a number in [0, 1], got {x!r}")
    if not 0.0 <= float(x) <= 1.0:
        raise DataError(f"{name} out of range [0, 1]: {x!r}")


class SkipCounter:
    """Counts records skipped with `skip_bad`, by reason, keeping the first few messages."""

    def __init__(self, keep: int = 5):
        self.counts: collections.Counter = collections.Counter()
        self.examples: list[str] = []
        self.keep = keep

    def add(self, err: DataError) -> None:
        reason = err.reason.split(":")[0][:60]
        self.counts[reason] += 1
        if len(self.examples) < self.keep:
            self.examples.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "first": list(self.examples)}
