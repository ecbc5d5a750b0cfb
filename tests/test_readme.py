"""The README's commands: the researcher's loop runs as written; every other `prm-jax` command parses."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from prm_jax import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _join(lines):
    """Returns the commands of shell lines, backslash continuations joined, comments dropped."""
    out, cur = [], ""
    for line in lines:
        line = line.split("  #")[0].rstrip() if "  #" in line else line.rstrip()
        cur += line.strip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        if cur:
            out.append(cur)
        cur = ""
    return out


def loop_commands():
    sec = README.split("## The researcher's loop", 1)[1]
    block = re.search(r"```bash\n(.*?)```", sec, re.S).group(1)
    return _join(block.splitlines())


def all_commands():
    """Every `prm-jax ...` command of the README: in fenced and indented code blocks, and inline."""
    code, fenced = [], False
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            code.append(line.strip().rstrip('"'))
    cmds, i = [], 0
    while i < len(code):
        if code[i].startswith("prm-jax "):
            chunk = [code[i]]
            while chunk[-1].endswith("\\") and i + 1 < len(code):
                i += 1
                chunk.append(code[i])
            cmds += _join(chunk)
        i += 1
    return cmds


def inline_mentions():
    """`prm-jax ...` fragments in the README's prose (a command and some of its options)."""
    found = re.findall(r"`(prm-jax (?:evaluate|search|train|fit-check|export|data|demo|sweep)[^`]*)`", README)
    return [" ".join(c.split()) for c in found]


def _subparser(parser, words):
    """Returns the (sub)parser `words` select: prm-jax evaluate processbench -> processbench's."""
    for w in words:
        subs = [a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)]
        if not subs or w not in subs[0].choices:
            break
        parser = subs[0].choices[w]
    return parser


def _sh(cmd, cwd):
    """Runs a README command as a user's shell would (one CPU device: no simulated mesh)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    argv = [sys.executable, "-m", "prm_jax.cli", *shlex.split(cmd)[1:]]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)


def test_readme_loop_runs_as_written(tmp_path):
    """The loop block, command by command, in a scratch folder beside the repo's experiments/."""
    os.symlink(os.path.join(ROOT, "experiments"), tmp_path / "experiments")
    cmds = loop_commands()
    assert [c.split()[1] for c in cmds] == ["train", "train", "export", "evaluate", "evaluate", "evaluate", "search"]
    for cmd in cmds:
        p = _sh(cmd, tmp_path)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-2000:]}"
    run = tmp_path / "runs" / "loop"
    # a checkpoint at the end of a run by default; the exported folder carries its tokenizer
    assert os.listdir(run / "prm" / "ckpt") and (run / "prm_hf" / "tokenizer.json").exists()
    a, b = (json.load(open(run / f)) for f in ("pb_run.json", "pb_hf.json"))
    assert a["predictions"] == b["predictions"] and a["results"] == b["results"]
    with open(run / "processbench.csv") as f:
        pb = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in pb] == ["runs/loop/prm", "runs/loop/prm_hf"]
    assert pb[0]["average F1 %"] == pb[1]["average F1 %"]
    with open(run / "best_of_n.csv") as f:
        rows = list(csv.DictReader(f))
    methods = [r["method"] for r in rows]
    assert methods == ["majority", "oracle", "verifier/min/argmax", "verifier/min/weighted_vote", "beam"]
    assert [r["n_problems"] for r in rows] == ["3"] * 4 + ["3"]  # --limit 3; the GSM8K fixture has 3
    picks = [json.loads(line) for line in open(run / "math500_picks.jsonl")]
    assert len(picks) == 3 and all(len(p["samples"]) == 4 for p in picks)
    for r in rows[:4]:  # each table row's accuracy at N = 4 is the mean of its per-problem picks
        mean = 100 * sum(p["picks"][r["method"]]["correct"] for p in picks) / 3
        assert float(r["accuracy %"]) == pytest.approx(mean, abs=1e-4), r["method"]


def test_every_readme_command_parses_and_its_config_loads():
    """Each `prm-jax` command in the README parses with the current CLI (options exist as written),
    and each `--config PATH:ARG` it names loads with its overrides."""
    cmds = all_commands()
    assert len(cmds) >= 15
    for cmd in cmds:
        argv = shlex.split(cmd.replace("$PB", "a.json b.json"))[1:]
        parser = cli.build_parser(argv)
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: {cmd}")
        module = __import__(cli.COMMANDS[args.command][0], fromlist=["run"])
        assert not extra or getattr(module, "ACCEPTS_EXTRA", False), f"unknown options in: {cmd}"
        spec = getattr(args, "config", None)
        if spec and ".py" in spec and os.path.exists(os.path.join(ROOT, spec.split(":")[0])):
            c = config.load_config(os.path.join(ROOT, spec))
            config.apply_overrides(c, [e for e in extra if e.startswith("--config.") and "=" in e and e[-1] != "="])


def test_readme_inline_mentions_name_existing_commands_and_options():
    mentions = inline_mentions()
    assert len(mentions) >= 5
    for m in mentions:
        words = m.split()[1:]
        p = _subparser(cli.build_parser(words), words)
        known = {o for a in p._actions for o in a.option_strings}
        assert p.prog != "prm-jax", f"no such command: {m}"
        bad = [w for w in words if w.startswith("--") and w not in known and not w.startswith("--config.")]
        assert not bad, f"README mentions {bad}, which `{p.prog}` does not have: {m}"
