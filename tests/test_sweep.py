"""Tests for prm_jax/hyper.py, prm_jax/sweep.py and `prm-jax sweep`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prm_jax import hyper, sweep

EXPERIMENT = textwrap.dedent('''
    """A toy experiment for the sweep tests."""
    import ml_collections

    COMMAND = "train"
    SWEEP_METRICS = ("final_loss",)

    def get_config(arg=None):
        c = ml_collections.ConfigDict()
        c.lr = 0.1
        c.label = "hard"
        return c

    def get_hyper(h):
        return h.product([h.sweep("config.lr", [0.5, 2.0]), h.fixed("label", "soft")])
''')

# Stands in for `prm-jax train`: writes metrics.jsonl with a loss that is a known function of lr.
FAKE_TRAIN = textwrap.dedent("""
    import json, sys, pathlib
    args = sys.argv[1:]
    assert args[0] == "train", args
    workdir = pathlib.Path(args[args.index("--workdir") + 1])
    over = dict(a[len("--config."):].split("=", 1) for a in args if a.startswith("--config."))
    lr = float(over["lr"])
    if over.get("fail") == "1":
        sys.exit(3)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "metrics.jsonl", "w") as f:
        for step in range(3):
            f.write(json.dumps({"step": step, "loss": lr * (3 - step)}) + "\\n")
        f.write(json.dumps({"step": 2, "final_loss": lr, "label": over["label"]}) + "\\n")
""")


def test_sweep_product_zip_chain():
    s = hyper.product([hyper.sweep("a", [1, 2]), hyper.sweep("config.b", ["x", "y"])])
    assert s == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    z = hyper.zipit([hyper.sweep("a", [1, 2]), hyper.sweep("b", [3, 4])])
    assert z == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    c = hyper.chain([hyper.fixed("a", 0), z])
    assert c == [{"a": 0}, {"a": 1, "b": 3}, {"a": 2, "b": 4}]
    # product of a zip with a sweep: 2 x 2 points
    assert len(hyper.product([z, hyper.sweep("c", [0, 1])])) == 4


def test_sweep_bad_input():
    with pytest.raises(ValueError, match="different lengths"):
        hyper.zipit([hyper.sweep("a", [1, 2]), hyper.sweep("b", [3])])
    with pytest.raises(ValueError, match="set by two factors"):
        hyper.product([hyper.sweep("a", [1]), hyper.sweep("config.a", [2])])
    with pytest.raises(ValueError, match="no values"):
        hyper.sweep("a", [])
    with pytest.raises(ValueError, match="appears twice"):
        hyper.validate([{"a": 1}, {"a": 1}])
    with pytest.raises(ValueError, match="point 0"):
        hyper.validate([("a", 1)])
    with pytest.raises(ValueError, match="no points"):
        hyper.validate([])


def test_once_and_no_hyper_give_one_base_run(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT)
    runs = sweep.plan(str(exp), tmp_path / "w", once=True)
    assert [r.name for r in runs] == ["00_base"]
    assert runs[0].argv[-2:] == ("--workdir", str(tmp_path / "w"))  # --once runs in the workdir itself


def test_format_and_names():
    assert sweep.overrides({"loss.beta": 0.05, "data.soft": True, "name": "x", "mesh.shape": [1, -1]}) == [
        "--config.loss.beta=0.05",
        "--config.data.soft=True",
        "--config.name=x",
        "--config.mesh.shape=(1, -1)",
    ]
    assert sweep.run_name(3, {"a.b": 0.5, "c": "x/y"}) == "03_a.b=0.5,c=x_y"


def test_plan_prints_gs_paths(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT)
    runs = sweep.plan(f"{exp}:tiny", "gs://bucket/sw", extra=["--config.steps=5"])
    assert [r.name for r in runs] == ["00_lr=0.5,label=soft", "01_lr=2.0,label=soft"]
    assert runs[1].argv == (
        "prm-jax",
        "train",
        "--config",
        f"{exp}:tiny",
        "--workdir",
        "gs://bucket/sw/01_lr=2.0,label=soft",
        "--config.lr=2.0",
        "--config.label=soft",
        "--config.steps=5",
    )


def test_final_metrics_reads_last_values_and_names_bad_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 2.0}\n{"step": 1, "loss": 1.5}\n{"step": 1, "eval/auroc": 0.9}\n'
    )
    assert sweep.final_metrics(tmp_path) == {"step": 1, "loss": 1.5, "eval/auroc": 0.9}
    (tmp_path / "final.json").write_text(json.dumps({"loss": 1.25, "bon": {"acc@16": 0.7}}))
    assert sweep.final_metrics(tmp_path)["loss"] == 1.25
    assert sweep.final_metrics(tmp_path)["bon/acc@16"] == 0.7
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1, oops}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        sweep.final_metrics(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no"):
        sweep.final_metrics(tmp_path / "nothing")


def test_two_point_sweep_runs_and_gathers(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT)
    fake = tmp_path / "fake_prm_jax.py"
    fake.write_text(FAKE_TRAIN)
    wd = tmp_path / "sw"
    runs = sweep.plan(str(exp), wd, base=[sys.executable, str(fake)])
    codes = sweep.execute(runs, max_parallel=2, progress=False)
    assert codes == {"00_lr=0.5,label=soft": 0, "01_lr=2.0,label=soft": 0}
    out = sweep.summarize(runs, wd, codes, metrics=sweep.sweep_metrics(str(exp)))
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lr"]) for r in rows] == [0.5, 2.0]
    assert [float(r["loss"]) for r in rows] == [0.5, 2.0]  # last logged loss = lr * 1
    assert [float(r["final_loss"]) for r in rows] == [0.5, 2.0]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    md = out["md"].read_text()
    assert md.splitlines()[0].startswith("| run | lr | label | status |")
    assert out["png"] is not None and out["png"].stat().st_size > 1000
    # a second execute skips finished runs (resumable sweeps): no subprocess, no new log
    for r in runs:
        (Path(r.workdir) / "sweep.log").unlink()
    assert sweep.execute(runs, progress=False) == codes
    assert not any((Path(r.workdir) / "sweep.log").exists() for r in runs)


def test_failed_run_is_reported(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT.replace('h.fixed("label", "soft")', 'h.fixed("fail", 1)'))
    fake = tmp_path / "fake_prm_jax.py"
    fake.write_text(FAKE_TRAIN)
    runs = sweep.plan(str(exp), tmp_path / "sw", base=[sys.executable, str(fake)])
    codes = sweep.execute(runs, progress=False)
    assert set(codes.values()) == {3}
    columns, rows = sweep.gather(runs, codes)
    assert [r["status"] for r in rows] == ["failed(3)", "failed(3)"]
    assert "sweep.log" in {p.name for p in Path(runs[0].workdir).iterdir()}


def test_cli_print_commands(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "prm_jax.cli",
            "sweep",
            "--config",
            str(exp),
            "--workdir",
            str(tmp_path / "w"),
            "--print-commands",
            "--config.steps=7",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2
    assert out[0].startswith("prm-jax train --config ")
    assert out[0].endswith("--config.lr=0.5 --config.label=soft --config.steps=7")


def test_cli_rejects_unknown_flag(tmp_path):
    exp = tmp_path / "toy.py"
    exp.write_text(EXPERIMENT)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "prm_jax.cli",
            "sweep",
            "--config",
            str(exp),
            "--workdir",
            str(tmp_path / "w"),
            "--bogus",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "--bogus" in r.stderr


def test_real_two_point_sweep_soft_vs_hard(tmp_path):
    """`prm-jax sweep` over math_shepherd_bce.py:tiny_soft (soft vs hard labels) through `prm-jax train`,
    2 steps each, gathered into one table."""
    import os

    root = Path(__file__).resolve().parents[1]
    wd = tmp_path / "sw"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")  # as on a plain CPU
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "prm_jax.cli",
            "sweep",
            "--config",
            str(root / "experiments" / "math_shepherd_bce.py:tiny_soft"),
            "--workdir",
            str(wd),
            "--config.train.steps=2",
            "--config.train.eval_every=2",
            "--config.train.ckpt_every=-1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    with open(wd / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["data.label_field"] for row in rows] == ["labels", "hard_labels"]
    assert all(row["status"] == "ok" and float(row["step"]) == 2 for row in rows)
    losses = [float(row["loss"]) for row in rows]
    assert losses[0] != losses[1]  # different targets, same seed and data: the runs differ
    assert (wd / "sweep.png").stat().st_size > 1000 and "eval/loss" in (wd / "sweep.md").read_text()


def test_shell_line_round_trips_through_bash():
    args = ["a\n\nb", "it's", "x y", "--config.k=v"]
    line = sweep.shell_line(["prog", *args])
    assert "\n" not in line  # one command per line for a launcher
    out = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -c 'import sys, json; print(json.dumps(sys.argv[1:]))' " + line.split(" ", 1)[1],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == args


def test_seeds_repeat_every_point_and_the_plot_groups_them(tmp_path):
    """`--seeds K` sets the config's seed key to 0..K-1 on every point; seed_groups (the plot's points)
    pools the seeds of each setting, whose mean and sd the bars show."""
    spec = str(Path(__file__).resolve().parents[1] / "experiments" / "math_shepherd_bce.py:tiny_soft")
    assert sweep.seed_key(spec) == "train.seed"
    runs = sweep.plan(spec, tmp_path, seeds=3)
    assert [(r.point["data.label_field"], r.point["train.seed"]) for r in runs] == [
        (f, s) for f in ("labels", "hard_labels") for s in range(3)
    ]
    assert all(f"--config.train.seed={r.point['train.seed']}" in r.argv for r in runs)
    with pytest.raises(ValueError, match="--seeds 0"):
        sweep.plan(spec, tmp_path, seeds=0)
    rows = [
        {"run": r.name, **r.point, "status": "ok", "eval/step_auroc": v}
        for r, v in zip(runs, [0.5, 0.7, 0.9, 0.2, 0.4, 0.6])
    ]
    columns = ["run", "data.label_field", "train.seed", "status", "eval/step_auroc"]
    settings, seeds, groups = sweep.seed_groups(columns, rows)
    assert settings == ["data.label_field"] and seeds == ["train.seed"]
    vals = {k: [r["eval/step_auroc"] for r in g] for k, g in groups.items()}
    assert vals == {("labels",): [0.5, 0.7, 0.9], ("hard_labels",): [0.2, 0.4, 0.6]}
    png = sweep.plot(columns, rows, tmp_path / "sweep.png", title="soft vs hard")
    assert png.stat().st_size > 1000
