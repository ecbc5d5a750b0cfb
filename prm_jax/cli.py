"""The `prm-jax` command: parses arguments and dispatches to one module per subcommand.

Each subcommand lives in `prm_jax/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported lazily so that `prm-jax info` does not pay for the data stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from prm_jax.config import UnknownKeyError

# name -> (module, one-line help)
COMMANDS = {
    "info": ("prm_jax.commands.info", "versions, devices and backend"),
    "data": ("prm_jax.commands.data", "dataset statistics and preparation"),
    "train": ("prm_jax.commands.train", "train a verifier or policy from an experiment config"),
    "fit-check": ("prm_jax.commands.fitcheck", "compile a train step for N simulated devices; memory and FLOPs"),
    "search": ("prm_jax.commands.search", "reward-guided search (best-of-N, beam, PAV beam)"),
    "evaluate": ("prm_jax.commands.evaluate", "ProcessBench evaluation of a PRM (a run folder or an HF folder)"),
    "export": (
        "prm_jax.commands.export",
        "write a trained run as a Hugging Face folder (prm-jax or token-classification head)",
    ),
    "demo": ("prm_jax.commands.demo", "the end-to-end arithmetic-task demo (the main job)"),
    "sweep": ("prm_jax.commands.sweep", "run or list a hyper-parameter sweep and gather its results"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Returns the top-level parser; only the chosen subcommand's module is imported."""
    from prm_jax import __version__

    parser = argparse.ArgumentParser(
        prog="prm-jax",
        description="prm-jax: process reward models in JAX. Train step-level verifiers (BCE, implicit, PAV, "
        "ORM), label steps by Monte-Carlo rollouts, score public PRMs, search with them (best-of-N, beam, "
        "PAV beam) and evaluate on ProcessBench.",
        epilog="--debug (anywhere): show the traceback of an error. `prm-jax COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"prm-jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


# What a user's mistake raises (a missing file, bad data, a bad setting, a NaN checkpoint): one line
# `error: ...` and exit 2; `--debug` re-raises for the traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, UnknownKeyError)


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code (2 with a one-line message on a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _run(argv)
    except USER_ERRORS as e:
        if debug:
            raise
        msg = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{msg} ({e.filename})"
        print(f"error: {msg}  [--debug shows the traceback]", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    if extra and not getattr(module, "ACCEPTS_EXTRA", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(module, "ACCEPTS_EXTRA", False):
        args.extra = extra
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
