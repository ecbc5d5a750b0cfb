"""`prm-jax rl-compare --config PATH[:ARG] --workdir DIR [--seeds 0,1,2] [--quick]`: every reward source x seeds.

    prm-jax rl-compare --config experiments/arith_rl.py --workdir runs/rl              # after `prm-jax demo`
    prm-jax rl-compare --config experiments/arith_rl.py --workdir /tmp/rlq --quick      # plumbing, tiny

Runs `prm_jax.rl_report.compare`: each source of the experiment's `get_hyper` (or `--sources`) for
each seed in WORKDIR/SOURCE/seed_N (resumable: finished runs are kept, a cut one resumes), then
writes WORKDIR/report.md, report.json and rl_curves.png (held-out accuracy against samples seen with
95% bands over seeds, the PRM reward of the PURE sources, the papers' claims beside the figures).
`--report-only` rewrites the report from the runs already there.
"""

from __future__ import annotations

import argparse

ACCEPTS_EXTRA = True  # --config.key=value overrides, applied to every run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="an RL stage config PATH[:ARG] (experiments/arith_rl.py)")
    parser.add_argument("--workdir", required=True, help="one folder per source and seed, and the report")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--sources", default=None, help="comma-separated reward sources (default: get_hyper's)")
    parser.add_argument(
        "--quick", action="store_true", help="the config's `tiny` size with one seed: a plumbing check of minutes"
    )
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report of finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{what} {text!r}: give comma-separated integers, e.g. 0,1,2") from None


def run(args: argparse.Namespace) -> int:
    from prm_jax import jsonio, rl, rl_report, sweep

    spec, seeds = args.config, _ints(args.seeds, "seeds")
    if args.quick:
        path, arg = sweep.split_spec(spec)
        spec, seeds = f"{path}:{(arg or 'outcome').split(',')[0]},tiny", seeds[:1]
    sources = args.sources.split(",") if args.sources else None
    if args.report_only:
        figs = rl_report.write_report(args.workdir, sources or list(rl.SOURCES), seeds)
    else:
        figs = rl_report.compare(
            spec,
            args.workdir,
            seeds,
            sources=sources,
            overrides=getattr(args, "extra", []) or [],
            progress=not args.no_progress,
        )
    if figs is None:
        print("[rl-compare] SIGTERM: the run in progress saved its checkpoint; run the same command to resume")
        return 1
    print(jsonio.dumps({"report": f"{args.workdir}/report.md", "claims": figs["claims"]}))
    return 0
