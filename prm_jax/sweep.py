"""Sweeps: expand an experiment's `get_hyper(h)` into runs, run them, gather final metrics into a table.

A sweep of `experiments/foo.py:tiny` in `WORKDIR` gives one run folder per point,
`WORKDIR/NN_key=value,...`, each run by the experiment's command (module constant `COMMAND`, default
`train`): `prm-jax COMMAND --config experiments/foo.py:tiny --workdir RUN --config.key=value ...`.
A stage whose command takes flags rather than a config (e.g. `prm-jax evaluate processbench`) defines
`command(config, workdir) -> [args after prm-jax]` in its experiment file; the point's overrides are
then applied to the config here and the flags built from it.
Each run's final metrics are read from its folder (the experiment's `RESULT_FILES`, else `final.json` /
`metrics.json` / `results.json`, merged over the last value of every key in `metrics.jsonl`) and gathered
into `WORKDIR/sweep.csv`, `sweep.md` and a plot `sweep.png`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import posixpath
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from prm_jax import hyper

FINAL_FILES = ("final.json", "metrics.json", "results.json")
METRICS_JSONL = "metrics.jsonl"
DEFAULT_BASE = ("prm-jax",)
RUN_STAGE = "run-stage"  # argv marker: a Python stage run by `python -m prm_jax.sweep`, not a prm-jax command


def split_spec(spec: str) -> tuple[str, str | None]:
    """Returns (path, arg) of a `PATH[:ARG]` config spec."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def load_module(path: str):
    """Returns the experiment file at `path` imported as a module (`config.load_module`)."""
    from prm_jax.config import load_module as load

    return load(str(path))


def get_points(path: str, *, once: bool = False, arg: str | None = None) -> list[hyper.Point]:
    """Returns the validated sweep points of the experiment file's `get_hyper(h)` (or `get_hyper(h, arg)`,
    when it takes the config argument too, so a variant can choose its sweep).

    With `once`, or for a file without get_hyper, returns one empty point: the config as it is.
    """
    import inspect

    module = load_module(path)
    if once or not hasattr(module, "get_hyper"):
        return [{}]
    fn = module.get_hyper
    takes_arg = len(inspect.signature(fn).parameters) >= 2
    return hyper.validate(fn(hyper, arg) if takes_arg else fn(hyper))


def seed_key(spec: str) -> str:
    """Returns the key that seeds a run of `spec`'s config: `train.seed` (training) or `seed` (stages)."""
    from prm_jax import config as config_lib

    c = config_lib.load_config(spec)
    if "train" in c and "seed" in c.train:
        return "train.seed"
    if "seed" in c:
        return "seed"
    raise ValueError(f"{spec}: its config has no train.seed or seed key to repeat over")


def is_seed(setting: str) -> bool:
    """Returns whether a sweep setting is a seed (aggregated over in the plot, not an axis)."""
    return setting == "seed" or setting.endswith(".seed")


def get_command(path: str) -> list[str]:
    """Returns the `prm-jax` subcommand words that run this experiment (`COMMAND`, default train)."""
    module = load_module(path)
    if hasattr(module, "command"):
        return str(getattr(module, "COMMAND", "")).split()
    return str(getattr(module, "COMMAND", "train")).split()


def format_value(v: Any) -> str:
    """Returns a value as the train CLI's `--config.key=VALUE` text (strings bare, the rest repr)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return repr(tuple(v))
    return repr(v)


def run_name(index: int, point: hyper.Point) -> str:
    """Returns a folder name for a point: its index and its settings, file-system safe."""
    parts = [f"{k}={format_value(v)}" for k, v in point.items()]
    name = f"{index:02d}_" + (",".join(parts) or "base")
    name = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", name)
    return name[:120]


def overrides(point: hyper.Point) -> list[str]:
    """Returns the `--config.key=value` arguments of a point."""
    return [f"--config.{k}={format_value(v)}" for k, v in point.items()]


@dataclass(frozen=True)
class Run:
    name: str
    point: hyper.Point
    workdir: str  # a local folder, or a gs:// path when only printing commands
    argv: tuple[str, ...]
    result_files: tuple[str, ...] = FINAL_FILES


def command_args(
    spec: str, workdir: str, point: hyper.Point | None = None, extra: Sequence[str] = (), module=None
) -> list[str]:
    """Returns the `prm-jax` arguments that run `spec` with the point's overrides in `workdir`."""
    path, _ = split_spec(spec)
    module = module or load_module(path)
    over = overrides(point or {}) + list(extra)
    if hasattr(module, "command"):
        from prm_jax import config as config_lib

        cfg = config_lib.apply_overrides(config_lib.load_config(spec), over)
        return [str(a) for a in module.command(cfg, workdir)]
    if hasattr(module, "run"):  # a Python stage: `python -m prm_jax.sweep` calls run(config, workdir)
        return [RUN_STAGE, "--config", spec, "--workdir", workdir, *over]
    words = str(getattr(module, "COMMAND", "train")).split()
    return [*words, "--config", spec, "--workdir", workdir, *over]


def _resolve(argv: Sequence[str], base: Sequence[str]) -> tuple[str, ...]:
    """Returns argv with a Python stage's marker replaced by `python -m prm_jax.sweep`."""
    if argv and argv[0] == RUN_STAGE:
        py = "python" if tuple(base) == DEFAULT_BASE else sys.executable
        return (py, "-m", "prm_jax.sweep", *argv[1:])
    return (*base, *argv)


def plan(
    spec: str,
    workdir: str | os.PathLike,
    *,
    base: Sequence[str] = DEFAULT_BASE,
    extra: Sequence[str] = (),
    once: bool = False,
    seeds: int = 1,
) -> list[Run]:
    """Returns one Run per sweep point: its folder and command line. With `once`, one run of the config
    as it is, in `workdir` itself (so a stage's output lands where the next stage's config expects it).
    `seeds` > 1 repeats every point with the config's seed (`seed_key`) set to 0 .. seeds - 1."""
    path, arg = split_spec(spec)
    points = get_points(path, once=once, arg=arg)
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: give 1 or more")
    if seeds > 1:
        key = seed_key(spec)
        if any(key in p for p in points):
            raise ValueError(f"{path}'s sweep sets {key} itself; drop --seeds")
        points = [{**p, key: s} for p in points for s in range(seeds)]
    module = load_module(path)
    results = tuple(getattr(module, "RESULT_FILES", ())) + FINAL_FILES
    runs = []
    for i, point in enumerate(points):
        name = run_name(i, point)
        rdir = str(workdir) if once else posixpath.join(str(workdir), name)
        argv = _resolve(command_args(spec, rdir, point, extra, module), base)
        runs.append(Run(name, point, rdir, tuple(argv), results))
    return runs


def _quote(a: str) -> str:
    import shlex

    if "\n" in a or "\t" in a:  # bash ANSI-C quoting keeps one command per line
        esc = a.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
        return f"$'{esc}'"
    return shlex.quote(a)


def shell_line(argv: Sequence[str]) -> str:
    """Returns argv as one shell-quoted line (for a cluster launcher); newlines become $'\\n'."""
    return " ".join(_quote(a) for a in argv)


def execute(
    runs: Sequence[Run], *, max_parallel: int = 1, force: bool = False, env: dict | None = None, progress: bool = True
) -> dict[str, int]:
    """Runs every point as a subprocess, at most `max_parallel` at once; returns name -> exit code.

    A run whose folder already holds final metrics is skipped (exit code 0) unless `force`: a sweep
    interrupted half-way is resumed by running the same command again. Each run's stdout and stderr go
    to `RUN/sweep.log`.
    """
    if max_parallel < 1:
        raise ValueError(f"--max-parallel must be >= 1, got {max_parallel}")
    from tqdm import tqdm

    codes: dict[str, int] = {}
    pending = []
    for r in runs:
        if not force and final_metrics(r.workdir, missing_ok=True, files=r.result_files):
            codes[r.name] = 0
        else:
            pending.append(r)
    bar = tqdm(total=len(runs), initial=len(codes), desc="sweep", disable=not progress)
    active: list[tuple[Run, subprocess.Popen, Any]] = []
    while pending or active:
        while pending and len(active) < max_parallel:
            r = pending.pop(0)
            Path(r.workdir).mkdir(parents=True, exist_ok=True)
            log = open(Path(r.workdir) / "sweep.log", "w")
            log.write(shell_line(r.argv) + "\n")
            log.flush()
            proc = subprocess.Popen(
                list(r.argv), stdout=log, stderr=subprocess.STDOUT, env=env if env is not None else os.environ.copy()
            )
            active.append((r, proc, log))
        time.sleep(0.2)
        still = []
        for r, proc, log in active:
            if proc.poll() is None:
                still.append((r, proc, log))
                continue
            log.close()
            codes[r.name] = proc.returncode
            bar.update(1)
            if proc.returncode != 0:
                tqdm.write(
                    f"sweep: {r.name} failed with exit code {proc.returncode}; see {Path(r.workdir) / 'sweep.log'}"
                )
        active = still
    bar.close()
    return codes


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def final_metrics(
    run_dir: str | os.PathLike, *, missing_ok: bool = False, files: Sequence[str] = FINAL_FILES
) -> dict[str, Any]:
    """Returns a run's final metrics: the last value of each metrics.jsonl key, updated by the first of
    `files` (a final JSON) that exists.

    Raises FileNotFoundError when the folder holds neither (unless `missing_ok`, then returns {}), and
    ValueError naming file and line for a malformed metrics.jsonl line.
    """
    run_dir = Path(run_dir)
    out: dict[str, Any] = {}
    jsonl = run_dir / METRICS_JSONL
    if jsonl.is_file():
        with open(jsonl) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{jsonl}:{lineno}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{jsonl}:{lineno}: expected a JSON object")
                out.update(row)
    for name in files:
        p = run_dir / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}: not JSON ({e.msg})") from None
            if isinstance(data, dict):
                out.update(_flatten(data))
            break
    if not out and not missing_ok:
        raise FileNotFoundError(f"{run_dir} holds no {', '.join(files)} or {METRICS_JSONL}")
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Returns a nested dict flattened to `a/b` keys (scalars and strings only)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif _is_number(v) or isinstance(v, (str, bool)) or v is None:
            out[key] = v
    return out


def gather(runs: Sequence[Run], codes: dict[str, int] | None = None) -> tuple[list[str], list[dict]]:
    """Returns (columns, rows): one row per run with its settings, exit status and final metrics."""
    rows, metric_keys = [], []
    setting_keys = list(dict.fromkeys(k for r in runs for k in r.point))
    for r in runs:
        m = final_metrics(r.workdir, missing_ok=True, files=r.result_files)
        row = {"run": r.name, **r.point}
        status = "ok" if m else "missing"
        if codes is not None and codes.get(r.name, 0) != 0:
            status = f"failed({codes[r.name]})"
        row["status"] = status
        for k, v in m.items():
            if _is_number(v) or isinstance(v, bool):
                row[k] = v
                if k not in metric_keys:
                    metric_keys.append(k)
        rows.append(row)
    return ["run", *setting_keys, "status", *metric_keys], rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_tables(columns: Sequence[str], rows: Sequence[dict], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Writes `sweep.csv` and `sweep.md` into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "sweep.csv", out_dir / "sweep.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in columns})
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def pick_metrics(
    columns: Sequence[str], rows: Sequence[dict], preferred: Sequence[str] = (), limit: int = 4
) -> list[str]:
    """Returns up to `limit` metric columns to plot: `preferred` ones first, then eval/loss metrics."""
    settings_end = list(columns).index("status") + 1
    metrics = [c for c in columns[settings_end:] if any(_is_number(r.get(c)) for r in rows)]
    chosen = [m for m in preferred if m in metrics]
    skip = {"step", "lr", "tokens_per_s", "grad_norm", "time", "epoch"}
    ranked = sorted(
        (m for m in metrics if m not in chosen and m.split("/")[-1] not in skip),
        key=lambda m: (not m.startswith("eval"), "loss" not in m, m),
    )
    return (chosen + ranked)[:limit]


def seed_groups(columns: Sequence[str], rows: Sequence[dict]) -> tuple[list[str], list[str], dict]:
    """Returns (settings, seed settings, {setting values: rows}): the rows grouped by every setting
    except the seeds, in first-seen order."""
    settings_all = list(columns)[1 : list(columns).index("status")]
    seeds = [c for c in settings_all if is_seed(c)]
    settings = [c for c in settings_all if not is_seed(c)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(_fmt(r.get(c)) for c in settings), []).append(r)
    return settings, seeds, groups


def plot(
    columns: Sequence[str],
    rows: Sequence[dict],
    out_path: str | os.PathLike,
    *,
    metrics: Sequence[str] = (),
    title: str = "",
) -> Path | None:
    """Writes a PNG with one panel per metric against the sweep's settings; returns its path (None:
    nothing to plot).

    Runs that differ only in a seed setting (`is_seed`) are one point: the mean over seeds with a
    +-1 sd error bar, each seed a small dot, the seed count in the caption. With a single numeric
    setting the x axis is that setting (log scale when it spans > 20x); otherwise one bar per setting
    combination, labelled by its values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = list(metrics) or pick_metrics(columns, rows)
    if not metrics or not rows:
        return None
    settings, seeds, groups = seed_groups(columns, rows)
    keys = list(groups)
    numeric_x = len(settings) == 1 and all(_is_number(groups[k][0].get(settings[0])) for k in keys)
    n_seeds = sorted({len(v) for v in groups.values()})
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        vals = [[float(r[m]) for r in groups[k] if _is_number(r.get(m))] for k in keys]
        mean = [float(np.mean(v)) if v else math.nan for v in vals]
        sd = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
        if numeric_x:
            xs = [float(groups[k][0][settings[0]]) for k in keys]
            order = sorted(range(len(xs)), key=lambda i: xs[i])
            xs, mean, sd, vals = ([seq[i] for i in order] for seq in (xs, mean, sd, vals))
            ax.errorbar(xs, mean, yerr=sd, fmt="o-", capsize=3, lw=1.4, color="C0", zorder=2)
            pos = [x for x in xs if x > 0]
            if pos and len(pos) == len(xs) and max(pos) / min(pos) > 20:
                ax.set_xscale("log")
            ax.set_xlabel(settings[0])
        else:
            xs = list(range(len(keys)))
            ax.bar(xs, mean, yerr=sd, capsize=4, color="C0", alpha=0.75, zorder=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([", ".join(k) or "(config)" for k in keys], rotation=20, ha="right", fontsize=8)
            ax.set_xlabel(", ".join(settings) or "run")
        for x, v in zip(xs, vals):  # each seed's value
            ax.plot([x] * len(v), v, ".", color="k", ms=4, alpha=0.6, zorder=3)
        ax.set_ylabel(m)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
    if seeds and max(n_seeds) > 1:
        how = f"mean +- 1 sd over {'/'.join(map(str, n_seeds))} seeds ({', '.join(seeds)}); dots: single seeds"
    else:
        how = "one run per point (a single seed: no error bars; `prm-jax sweep --seeds K` repeats each point)"
    fig.suptitle(f"{title}\n{how}" if title else how, fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def summarize(
    runs: Sequence[Run],
    workdir: str | os.PathLike,
    codes: dict[str, int] | None = None,
    *,
    title: str = "",
    metrics: Sequence[str] = (),
) -> dict[str, Any]:
    """Gathers every run's final metrics and writes sweep.csv, sweep.md and sweep.png; returns their paths and rows."""
    columns, rows = gather(runs, codes)
    csv_path, md_path = write_tables(columns, rows, workdir)
    png = plot(columns, rows, Path(workdir) / "sweep.png", metrics=metrics, title=title)
    return {"columns": columns, "rows": rows, "csv": csv_path, "md": md_path, "png": png}


def sweep_metrics(path: str) -> list[str]:
    """Returns the experiment's preferred metrics to plot (module constant `SWEEP_METRICS`), if any."""
    return list(getattr(load_module(path), "SWEEP_METRICS", ()))


def base_argv() -> list[str]:
    """Returns the argv prefix that runs `prm-jax` with this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "prm_jax.cli"]


def run_stage(spec: str, workdir: str, over: Sequence[str] = ()) -> dict:
    """Runs a Python stage: the experiment's `run(config, workdir) -> metrics`; writes WORKDIR/final.json."""
    from prm_jax import config as config_lib

    path, _ = split_spec(spec)
    module = load_module(path)
    if not hasattr(module, "run"):
        raise AttributeError(f"{path} defines no run(config, workdir); run it with its COMMAND instead")
    cfg = config_lib.apply_overrides(config_lib.load_config(spec), list(over))
    os.makedirs(workdir, exist_ok=True)
    metrics = module.run(cfg, workdir) or {}
    with open(Path(workdir) / "final.json", "w") as f:
        json.dump(_flatten(metrics), f, indent=1)
    return metrics


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m prm_jax.sweep", description="run one Python stage of an experiment (see run_stage)"
    )
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", required=True)
    args, over = ap.parse_known_args(argv)
    bad = [a for a in over if not a.startswith("--config.")]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    metrics = run_stage(args.config, args.workdir, over)
    print(json.dumps(_flatten(metrics)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
