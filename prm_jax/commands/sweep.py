"""`prm-jax sweep`: run (or list) every point of an experiment's `get_hyper(h)`, then gather a table.

    prm-jax sweep --config experiments/implicit_prm.py:tiny_ce --workdir runs/beta
    prm-jax sweep --config experiments/implicit_prm.py:ce --workdir gs://b/beta --print-commands

    prm-jax sweep --config experiments/math_shepherd_bce.py:tiny_soft --workdir runs/soft_vs_hard --seeds 3

Arguments after the known ones (e.g. `--config.train.steps=50`) are passed to every run.
"""

from __future__ import annotations

import argparse
import json
import os

ACCEPTS_EXTRA = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment file PATH[:ARG] with get_hyper(h)")
    parser.add_argument("--workdir", required=True, help="sweep folder; one sub-folder per point")
    parser.add_argument("--max-parallel", type=int, default=1, help="runs at once on this machine")
    parser.add_argument(
        "--print-commands",
        action="store_true",
        help="print one command line per point (for a cluster launcher) and exit",
    )
    parser.add_argument(
        "--gather-only", action="store_true", help="run nothing; gather the finished runs into the table"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="ignore get_hyper: run the config once as it is (stage configs, single runs)",
    )
    parser.add_argument("--force", action="store_true", help="rerun points that already have metrics")
    parser.add_argument(
        "--metrics", default="", help="comma-separated metrics to plot (default: the experiment's SWEEP_METRICS)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat every point with seeds 0..K-1 (train.seed, or a stage's seed); the plot shows mean +- sd",
    )


def run(args: argparse.Namespace) -> int:
    from prm_jax import sweep

    extra = list(getattr(args, "extra", []) or [])
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        raise ValueError(
            f"unrecognized arguments {' '.join(bad)} (only --config.KEY=VALUE overrides are passed through)"
        )
    path, _ = sweep.split_spec(args.config)
    if args.print_commands:
        for r in sweep.plan(
            args.config, args.workdir, base=sweep.DEFAULT_BASE, extra=extra, once=args.once, seeds=args.seeds
        ):
            print(sweep.shell_line(r.argv))
        return 0
    runs = sweep.plan(args.config, args.workdir, base=sweep.base_argv(), extra=extra, once=args.once, seeds=args.seeds)
    codes = None
    if not args.gather_only:
        codes = sweep.execute(runs, max_parallel=args.max_parallel, force=args.force)
    metrics = [m for m in args.metrics.split(",") if m] or sweep.sweep_metrics(path)
    _, arg = sweep.split_spec(args.config)
    varied = [k for k in dict.fromkeys(k for r in runs for k in r.point) if not sweep.is_seed(k)]
    title = f"{os.path.basename(path)}{f' ({arg})' if arg else ''}: " + (" x ".join(varied) or "one run")
    out = sweep.summarize(runs, args.workdir, codes, title=title, metrics=metrics)
    print(out["md"].read_text(), end="")
    print(json.dumps({"csv": str(out["csv"]), "md": str(out["md"]), "png": str(out["png"]) if out["png"] else None}))
    failed = [n for n, c in (codes or {}).items() if c != 0]
    return 1 if failed else 0
