"""Config helpers: PATH[:ARG] loading, --config.key=value overrides, JSON round trip, metrics files."""

import json
import os

import numpy as np
import pytest

from prm_jax import config as cfg_lib
from prm_jax import evaluate, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARITH = os.path.join(ROOT, "experiments", "arith_prm.py")


@pytest.mark.parametrize("objective", ["bce", "orm", "implicit_ce", "implicit_dpo", "pav", "sft"])
def test_every_arith_variant_loads(objective):
    c = cfg_lib.load_config(f"{ARITH}:{objective},tiny")
    assert c.objective == objective and c.model.preset == "tiny"
    assert c.data.pair == (objective == "implicit_dpo")


def test_overrides_types_and_errors():
    c = cfg_lib.load_config(f"{ARITH}:bce")
    cfg_lib.apply_overrides(
        c,
        [
            "--config.optim.lr=1e-4",
            "--config.train.steps=7",
            "--config.optim.warmup=0",
            "--config.mesh.shape={'data': 2, 'fsdp': -1}",
            "config.model.preset=small",
            "--config.data.shuffle=false",
            "--config.init.workdir=/tmp/x",
        ],
    )
    assert c.optim.lr == 1e-4 and c.train.steps == 7 and c.model.preset == "small"
    assert c.mesh.shape.fsdp == -1 and c.data.shuffle is False and c.init.workdir == "/tmp/x"
    cfg_lib.apply_overrides(c, ["--config.model.scan_layers=False", "--config.data.arith.max_steps=3"])
    assert c.model.scan_layers is False and c.data.arith.max_steps == 3
    with pytest.raises(KeyError, match="optim.lrr"):
        cfg_lib.apply_overrides(c, ["--config.optim.lrr=1"])
    with pytest.raises(ValueError, match="must look like"):
        cfg_lib.apply_overrides(c, ["--optim.lr=1"])
    with pytest.raises(ValueError, match="train.steps"):
        cfg_lib.apply_overrides(c, ["--config.train.steps=abc"])
    with pytest.raises(FileNotFoundError, match="nope.py"):
        cfg_lib.load_config("nope.py:bce")
    with pytest.raises(ValueError, match="bad variant"):
        cfg_lib.load_config(f"{ARITH}:bogus")


def test_json_round_trip():
    c = cfg_lib.load_config(f"{ARITH}:implicit_ce,tiny")
    back = cfg_lib.from_json(cfg_lib.to_json(c))
    assert cfg_lib.to_dict(back) == cfg_lib.to_dict(c)
    assert cfg_lib.get(back, "loss.beta") == c.loss.beta and cfg_lib.get(back, "init.workdir", "d") == "d"


def test_train_cli_print_config(capsys):
    from prm_jax import cli

    assert (
        cli.main(
            [
                "train",
                "--config",
                f"{ARITH}:pav",
                "--workdir",
                "/tmp/unused",
                "--print-config",
                "--config.train.steps=3",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["objective"] == "pav" and out["train"]["steps"] == 3


def test_auroc_against_a_pair_count():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=50).round(1), rng.integers(0, 2, 50)  # rounding makes ties
    pos, neg = s[y == 1], s[y == 0]
    ref = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert evaluate.step_auroc(s, y) == pytest.approx(ref)  # the one AUROC (metrics had a twin)
    assert np.isnan(evaluate.step_auroc([1.0, 2.0], [1, 1]))


def test_metrics_writer_jsonl_and_tensorboard(tmp_path):
    w = metrics.MetricsWriter(str(tmp_path))
    w.write(1, {"loss": np.float32(0.5), "lr": 1e-3, "vec": np.zeros(3)})
    w.write(2, {"loss": float("nan")})
    w.close()
    rows = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert rows == [{"step": 1, "loss": 0.5, "lr": 1e-3}, {"step": 2, "loss": None}]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
    # what `tensorboard --logdir RUN/tb` shows (the [tb] extra): the finite scalars at their steps
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["loss", "lr"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 0.5)]
    assert acc.Scalars("lr")[0].value == pytest.approx(1e-3)


def test_wandb_writer_logs_every_row_and_resumes_the_same_run(tmp_path, monkeypatch):
    """train.wandb_project: each metrics row goes to wandb.log at its step (non-finite values left
    out, as the jsonl writes null), the config to wandb.init, and a reopened workdir reuses its id.
    Then once through the real library in offline mode."""
    import sys
    import types

    calls = []

    class Run:
        def log(self, row, step):
            calls.append(("log", row, step))

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw)) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    wd = str(tmp_path / "run")
    w = metrics.MetricsWriter(wd, tensorboard=False, wandb_project="prm", config={"seed": 3})
    w.write(1, {"loss": 0.5, "bad": float("nan"), "vec": [1, 2]})
    w.close()
    metrics.MetricsWriter(wd, tensorboard=False, wandb_project="prm").close()
    inits = [c[1] for c in calls if c[0] == "init"]
    run_id = open(os.path.join(wd, metrics.WANDB_ID_FILE)).read()
    want = {"project": "prm", "name": "run", "id": run_id, "resume": "allow", "dir": wd, "config": {"seed": 3}}
    assert inits[0] == want and len(run_id) == 8
    assert inits[1]["id"] == run_id  # the id kept in the workdir
    assert ("log", {"loss": 0.5}, 1) in calls and calls.count(("finish",)) == 2

    monkeypatch.delitem(sys.modules, "wandb")
    pytest.importorskip("wandb")  # the test extra installs it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wd = str(tmp_path / "real")
    w = metrics.MetricsWriter(wd, tensorboard=False, wandb_project="prm", config={"seed": 3})
    for step in (1, 2):
        w.write(step, {"loss": 1.0 / step})
    w.close()
    run_id = open(os.path.join(wd, metrics.WANDB_ID_FILE)).read().strip()
    runs = [d for d in os.listdir(os.path.join(wd, "wandb")) if d.startswith("offline-run-")]
    assert len(runs) == 1 and runs[0].endswith(run_id)
    assert os.path.getsize(os.path.join(wd, "wandb", runs[0], f"run-{run_id}.wandb")) > 0
