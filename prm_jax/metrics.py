"""Training metrics on the host: WORKDIR/metrics.jsonl and TensorBoard events (tensorboardX)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def _scalar(v: Any) -> float | int | None:
    try:
        x = np.asarray(v)
        if x.size != 1:
            return None
        x = x.item()
        return x if isinstance(x, (int, bool)) else float(x)
    except (TypeError, ValueError):
        return None


class MetricsWriter:
    """Appends one JSON object per step to `workdir/metrics.jsonl` and mirrors it to TensorBoard.

    Only process 0 writes (`enabled=False` elsewhere). Non-finite floats are written as null in JSON.
    """

    def __init__(
        self, workdir: str, *, enabled: bool = True, tensorboard: bool = True, filename: str = "metrics.jsonl"
    ):
        self.enabled = enabled
        self.path = os.path.join(workdir, filename)
        self._tb = None
        self._file = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> dict:
        """Writes metrics of `step`; returns the JSON-able dict written."""
        row: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            x = _scalar(v)
            if x is None:
                continue
            row[prefix + k] = x if (not isinstance(x, float) or math.isfinite(x)) else None
            if self._tb is not None and isinstance(x, (int, float)) and math.isfinite(float(x)):
                self._tb.add_scalar(prefix + k, float(x), int(step))
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
        return row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def truncate_metrics(path: str, step: int) -> int:
    """Drops the rows of metrics.jsonl after `step` (a resumed run writes them again); returns how many."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    keep = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, path)
    return len(lines) - len(keep)


from prm_jax.jsonio import read_jsonl  # noqa: E402,F401  (metrics.jsonl rows: the one jsonl reader)
