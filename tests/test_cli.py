"""The `prm-jax` command line: help for every option, one-line errors for a user's mistakes."""

import argparse

import pytest

from prm_jax import cli


def _parsers(parser, path=()):
    """Yields (words, parser) for a parser and each nested subcommand parser."""
    yield path, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, p in a.choices.items():
                yield from _parsers(p, path + (name,))


def test_every_option_of_every_command_has_help_and_shows_its_default():
    seen = 0
    for name in cli.COMMANDS:
        top = cli.build_parser([name])
        for words, p in _parsers(top):
            if words[:1] != (name,):
                continue
            assert p.description or not words, f"prm-jax {' '.join(words)} has no description"
            text = p.format_help()
            for a in p._actions:
                if not a.option_strings or a.help == argparse.SUPPRESS or "-h" in a.option_strings:
                    continue
                seen += 1
                where = f"prm-jax {' '.join(words)} {a.option_strings[0]}"
                assert a.help and a.help.strip(), f"{where} has no help"
                if a.default not in (None, False) and not isinstance(a, argparse._VersionAction):
                    assert "default" in p._get_formatter()._get_help_string(a), where
            assert "%(default)" not in text
    assert seen > 100


def test_train_help_shows_the_override_syntax(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--config.SECTION.KEY=VALUE" in out and "--config.train.steps=200" in out


@pytest.mark.parametrize(
    "argv,where",
    [
        (
            ["train", "--config", "experiments/arith_prm.py:bce,tiny", "--workdir", "W", "--config.train.stpes=5"],
            "train.steps",
        ),
        (
            ["train", "--config", "experiments/arith_prm.py:bce,tiny", "--workdir", "W", "--config.train.steps=abc"],
            "abc",
        ),
        (["train", "--config", "experiments/nope.py", "--workdir", "W"], "nope.py"),
        (["search", "--arith", "3"], "--policy-workdir"),
        (["search", "--policy-workdir", "missing_run", "--arith", "3", "--method", "majority"], "missing_run"),
        (["search", "--policy-workdir", "R", "--arith", "3", "--agg", "nope"], "--agg"),
        (
            ["evaluate", "best-of-n", "--policy-workdir", "R", "--verifier-workdir", "V", "--arith", "2", "--n", "3"],
            "--n 3",
        ),
        (["evaluate", "best-of-n", "--policy-workdir", "R", "--arith", "2"], "--verifier-workdir"),
        (["evaluate", "processbench", "--checkpoint", "C", "--data", "missing.json"], "missing.json"),
        (["export", "missing_run", "out"], "missing_run"),
        (["fit-check", "--family", "qwen_prm", "--devices", "8"], "--preset"),
        (["data", "stats", "--format", "nope", "--path", "x.jsonl"], "nope"),
        (["data", "stats", "--format", "gsm8k", "--path", "missing.parquet"], "missing.parquet"),
        (["sweep", "--config", "experiments/nope.py", "--workdir", "W"], "nope.py"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(argv, where, capfd, tmp_path, monkeypatch):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(root)
    argv = [a.replace("W", str(tmp_path / "w")) if a == "W" else a for a in argv]
    rc = cli.main(argv)
    err = capfd.readouterr().err.strip().splitlines()  # capfd: fit-check's child process too
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and where in err[0], err
    monkeypatch.delenv("PRM_JAX_DEBUG", raising=False)
    raised = False
    try:  # --debug: the traceback (raised here, or printed by fit-check's child process)
        cli.main(argv + ["--debug"])
    except Exception:
        raised = True
    assert raised or "Traceback" in capfd.readouterr().err
    assert "PRM_JAX_DEBUG" not in os.environ  # --debug lasts one command
