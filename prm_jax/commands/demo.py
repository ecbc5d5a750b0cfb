"""`prm-jax demo --workdir DIR [--quick] [--set KEY=VALUE ...]`: the end-to-end arithmetic-task demo.

See prm_jax/demo.py for the stages; finished stages are skipped, so a rerun resumes.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/demo", help="output folder; finished stages are skipped")
    parser.add_argument("--quick", action="store_true", help="the small variant (what the test runs)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a demo setting, e.g. --set policy_steps=2000 (see demo.SETTINGS)",
    )


def run(args: argparse.Namespace) -> int:
    from prm_jax import demo

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"prm-jax demo: --set needs KEY=VALUE, got {item!r}")
        overrides[key] = value
    demo.run(args.workdir, quick=args.quick, overrides=overrides)
    return 0
