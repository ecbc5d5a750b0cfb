"""Training metrics on the host: WORKDIR/metrics.jsonl, TensorBoard events (tensorboardX) and, when a
project is set (`train.wandb_project`), Weights & Biases."""

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


WANDB_ID_FILE = "wandb_run_id"  # a resumed run logs to the same W&B run


def _wandb_run(workdir: str, project: str, config: Mapping | None):
    """Returns a wandb run for `workdir` (resumed by the id kept there); WANDB_MODE=offline works offline."""
    try:
        import wandb
    except ImportError:
        raise ValueError(
            f"train.wandb_project={project!r} needs the wandb library: pip install 'prm-jax[wandb]'"
        ) from None
    id_path = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_path):
        run_id = open(id_path).read().strip()
    else:
        import secrets

        run_id = secrets.token_hex(4)  # 8 of [0-9a-f]: a valid W&B run id
        with open(id_path, "w") as f:
            f.write(run_id)
    name = os.path.basename(os.path.normpath(workdir))
    return wandb.init(project=project, name=name, id=run_id, resume="allow", dir=workdir, config=dict(config or {}))


class MetricsWriter:
    """Appends one JSON object per step to `workdir/metrics.jsonl` and mirrors it to TensorBoard and,
    with `wandb_project`, to Weights & Biases (the run's `config` as its config).

    Only process 0 writes (`enabled=False` elsewhere). Non-finite floats are written as null in JSON.
    """

    def __init__(
        self,
        workdir: str,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        filename: str = "metrics.jsonl",
        wandb_project: str | None = None,
        config: Mapping | None = None,
    ):
        self.enabled = enabled
        self.path = os.path.join(workdir, filename)
        self._tb = None
        self._file = None
        self._wandb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tb"))
            if wandb_project:
                self._wandb = _wandb_run(workdir, wandb_project, config)

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
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=int(step))
        return row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


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
