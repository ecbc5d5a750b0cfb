"""The `prm-jax` command: parses arguments and dispatches to one module per subcommand.

Each subcommand lives in `prm_jax/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported lazily so that `prm-jax info` does not pay for the data stack.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from prm_jax.config import UnknownKeyError


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstrings' layout and appends each option's default to its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text or d in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults (nested subcommands inherit it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


# name -> (module, one-line help)
COMMANDS = {
    "info": ("prm_jax.commands.info", "versions, devices and backend"),
    "data": ("prm_jax.commands.data", "dataset statistics and preparation"),
    "train": ("prm_jax.commands.train", "train a verifier or policy from an experiment config"),
    "fit-check": ("prm_jax.commands.fitcheck", "compile a train step for N simulated devices; memory and FLOPs"),
    "search": ("prm_jax.commands.search", "reward-guided search (best-of-N, beam, PAV beam)"),
    "evaluate": (
        "prm_jax.commands.evaluate",
        "evaluate a PRM: ProcessBench F1 (processbench) or best-of-N accuracy with a policy (best-of-n)",
    ),
    "export": (
        "prm_jax.commands.export",
        "write a trained run as a Hugging Face folder (prm-jax or token-classification head)",
    ),
    "demo": ("prm_jax.commands.demo", "the end-to-end arithmetic-task demo (the main job)"),
    "rl": ("prm_jax.commands.rl", "RL from an SFT policy with a PRM reward source (outcome, PRM, PAV, PRIME)"),
    "rl-compare": ("prm_jax.commands.rl_compare", "RL with every reward source x seeds: curves, report.md, claims"),
    "sweep": ("prm_jax.commands.sweep", "run or list a hyper-parameter sweep and gather its results"),
}


def build_parser(argv: list[str]) -> Parser:
    """Returns the top-level parser; only the chosen subcommand's module is imported."""
    from prm_jax import __version__

    parser = Parser(
        prog="prm-jax",
        description="prm-jax: process reward models (PRMs) in JAX: verifiers that score every step of a\n"
        "model's reasoning. Train step-level verifiers (BCE, implicit, PAV, ORM) on a sharded mesh, label\n"
        "steps by Monte-Carlo rollouts, read the public PRMs' checkpoints, search with them (best-of-N, beam,\n"
        "PAV beam) and evaluate on ProcessBench.\n\n"
        "A first run: `prm-jax demo` (the arithmetic task end to end); `prm-jax train --config\n"
        "experiments/arith_prm.py:bce,tiny --workdir runs/bce` then `prm-jax evaluate processbench\n"
        "--checkpoint runs/bce --data FILE.jsonl`.",
        epilog="--debug (anywhere): show the traceback of an error. `prm-jax COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"prm-jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == chosen:
            mod = importlib.import_module(module)
            p = sub.add_parser(name, help=help_, description=f"{help_}.\n\n{mod.__doc__ or ''}".rstrip())
            mod.add_arguments(p)
            _describe_nested(p)
        else:
            sub.add_parser(name, help=help_)
    return parser


def _describe_nested(parser: argparse.ArgumentParser) -> None:
    """Gives each nested subcommand (evaluate processbench, data stats, ...) its one-line help as description."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for choice in a._choices_actions:
                p = a.choices[choice.dest]
                p.description = p.description or f"{choice.help}."
                _describe_nested(p)


# What a user's mistake raises (a missing file, bad data, a bad setting, a NaN checkpoint): one line
# `error: ...` and exit 2; `--debug` re-raises for the traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, UnknownKeyError)


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand and returns its exit code (2 with a one-line message on a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PRM_JAX_DEBUG") == "1"
    before = os.environ.get("PRM_JAX_DEBUG")
    if "--debug" in argv:
        os.environ["PRM_JAX_DEBUG"] = "1"  # a command's child processes (fit-check) inherit it
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
    finally:  # the setting lasts this command only (main may be called again in one process)
        if before is None:
            os.environ.pop("PRM_JAX_DEBUG", None)
        else:
            os.environ["PRM_JAX_DEBUG"] = before


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
