"""`prm-jax demo [--workdir DIR] [--config full|quick|PATH[:ARG]] [--config.a.b=v ...]`: the end-to-end demo.

The config defaults to the packaged `prm_jax/configs/demo.py:full` (an install needs no experiments/
folder); `quick` is the plumbing check. See prm_jax/demo.py for the stages; finished stages are
skipped, so a rerun resumes.
"""

from __future__ import annotations

import argparse

ACCEPTS_EXTRA = True  # --config.a.b=v overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/demo", help="output folder; finished stages are skipped")
    parser.add_argument(
        "--config",
        default="full",
        help="'full' (default), 'quick' (the small variant the tests run), or an experiment file PATH[:ARG]; "
        "then --config.a.b=VALUE overrides any key of it, e.g. --config.seed=1 --config.policy.train.steps=2000",
    )
    parser.add_argument("--quick", action="store_true", help="same as --config quick")


def load(spec: str, overrides):
    """Returns the locked demo config of `spec` ('full', 'quick' or PATH[:ARG]) with overrides applied."""
    from prm_jax import config as config_lib
    from prm_jax import demo

    config = demo.default_config(spec) if spec in ("full", "quick") else config_lib.load_config(spec)
    return config_lib.apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    from prm_jax import demo

    config = load("quick" if args.quick else args.config, getattr(args, "extra", []) or [])
    demo.run(args.workdir, config)
    return 0
