"""The RL comparison's figures against hand-computed values, and `prm-jax rl-compare --quick` end to end."""

import json
import os

import numpy as np
import pytest

from prm_jax import rl_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_t_band_is_the_student_t_interval_over_seeds():
    m, lo, hi = rl_report._t_band(np.array([[0.5], [0.6], [0.7]]))
    h = 4.3027 * 0.1 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    np.testing.assert_allclose([m[0], lo[0], hi[0]], [0.6, 0.6 - h, 0.6 + h], rtol=1e-5)  # t table: 4.303
    m, lo, hi = rl_report._t_band(np.array([[0.4, 0.5]]))  # one seed: no interval
    assert m.tolist() == [0.4, 0.5] and np.isnan(lo).all() and np.isnan(hi).all()


def _fake(curve_by_seed, reward_by_seed=None):
    out = {}
    for seed, curve in curve_by_seed.items():
        xs = [64 * i for i in range(len(curve))]
        rows = [
            {"step": i + 1, "samples_seen": 64 * (i + 1), "accuracy": 0.5}
            | ({"prm_reward": reward_by_seed[seed][i]} if reward_by_seed else {})
            for i in range(4)
        ]
        out[seed] = ({"curve": [[x, a] for x, a in zip(xs, curve)], "wall_s": 10.0}, rows)
    return out


def test_figures_gain_efficiency_and_the_hacking_signature():
    runs = {
        "outcome": _fake({0: [0.2, 0.3, 0.4, 0.5], 1: [0.2, 0.3, 0.4, 0.5]}),
        # reaches outcome's final 0.5 at the second eval (64 samples): 192 / 64 = 3x; +0.1 at the end
        "prime": _fake({0: [0.2, 0.5, 0.55, 0.6], 1: [0.2, 0.5, 0.55, 0.6]}),
        # PRM reward rising while held-out accuracy falls: the summation form's signature
        "prm_sum": _fake({0: [0.2, 0.15, 0.1, 0.1], 1: [0.2, 0.15, 0.1, 0.1]}, {0: [1, 2, 3, 4], 1: [1, 2, 3, 4]}),
        "prm_min": _fake({0: [0.2, 0.3, 0.4, 0.5], 1: [0.2, 0.3, 0.4, 0.5]}, {0: [1, 1, 1, 1], 1: [1, 1, 1, 1]}),
    }
    f = rl_report.figures(runs, [0, 1])
    p = f["sources"]["prime"]
    assert p["samples_to_outcome_final"] == 64 and p["sample_efficiency_vs_outcome"] == pytest.approx(3.0)
    assert p["gain_over_outcome"]["mean"] == pytest.approx(0.1)
    s = f["sources"]["prm_sum"]
    assert s["process_reward_slope"] == pytest.approx(1.0) and s["heldout_change"] == pytest.approx(-0.1)
    assert s["samples_to_outcome_final"] is None and s["sample_efficiency_vs_outcome"] is None
    claims = {c["source"]: c for c in f["claims"]}
    assert claims["prime"]["holds"]  # 3x >= 2.5x, gain's CI (zero width, two equal seeds) above 0
    assert claims["prm_sum"]["holds"] and "the hacking signature" in claims["prm_sum"]["measured"]
    assert claims["prm_min"]["holds"] and "no hacking signature" in claims["prm_min"]["measured"]
    md = rl_report.markdown(f, "caption")
    assert "| prime | 0.200 | 0.600 | 0.600 |" in md and "3.00x" in md and "not reached" in md


def test_report_names_unfinished_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="outcome/seed_0"):
        rl_report.write_report(str(tmp_path), ["outcome"], [0])


def test_compare_stops_at_a_preempted_run_and_writes_no_report(tmp_path, monkeypatch):
    from prm_jax import rl_loop

    calls = []
    monkeypatch.setattr(rl_loop, "run", lambda c, wd, progress: calls.append(wd) or {"preempted": True})
    spec = os.path.join(ROOT, "experiments", "arith_rl.py:outcome,tiny")
    assert rl_report.compare(spec, str(tmp_path), [0, 1], progress=False) is None
    assert calls == [rl_report.run_dir(str(tmp_path), "outcome", 0)]  # nothing after the preempted run
    assert not os.path.exists(tmp_path / "report.md")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A tiny SFT policy and a tiny BCE verifier (a few steps each, from random weights)."""
    from prm_jax import config as cfg_lib
    from prm_jax import loop

    out = {}
    for name, spec in (("policy", "arith_policy_sft.py:tiny"), ("bce", "arith_verifier.py:bce,tiny")):
        c = cfg_lib.load_config(os.path.join(ROOT, "experiments", spec))
        c.train.update(steps=3, eval_every=0, batch_size=8)  # 8 rows: one per simulated device
        out[name] = str(tmp_path_factory.mktemp(name))
        loop.run(c, out[name], progress=False)
    return out


def test_rl_compare_quick_runs_every_source_and_writes_the_report(tiny_runs, tmp_path, capsys):
    from prm_jax import cli, rl

    wd = str(tmp_path / "rl")
    argv = [
        "rl-compare",
        "--config",
        os.path.join(ROOT, "experiments", "arith_rl.py"),
        "--workdir",
        wd,
        "--quick",
        "--no-progress",
        f"--config.policy_workdir={tiny_runs['policy']}",
        "--config.train.mesh.shape.data=-1",  # the pg step data-parallel over the 8 simulated devices
        "--config.prime.mesh.shape.data=-1",
        *(f"--config.verifiers.{k}={tiny_runs['bce']}" for k in ("prm", "qpi", "pav")),
    ]
    assert cli.main(argv) == 0
    figs = json.load(open(os.path.join(wd, "report.json")))
    assert sorted(figs["sources"]) == sorted(rl.SOURCES) and figs["seeds"] == [0]
    for s in rl.SOURCES:
        final = json.load(open(os.path.join(wd, s, "seed_0", "final.json")))
        assert figs["sources"][s]["final_accuracy"]["per_seed"]["0"] == final["final_eval_accuracy"]
        assert figs["sources"][s]["samples"] == [0, 16, 32]  # tiny: 2 iterations of 4 problems x 4
    md = open(os.path.join(wd, "report.md")).read()
    assert all(f"| {s} |" in md for s in rl.SOURCES) and "claims" in md
    assert os.path.getsize(os.path.join(wd, "rl_curves.png")) > 10_000
    stamp = os.path.getmtime(os.path.join(wd, "prime", "seed_0", "final.json"))
    assert cli.main(argv) == 0  # finished runs are kept, only the report is rewritten
    assert os.path.getmtime(os.path.join(wd, "prime", "seed_0", "final.json")) == stamp
    rows = [json.loads(x) for x in open(os.path.join(wd, "outcome", "seed_0", "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2] and [r["samples_seen"] for r in rows] == [16, 32]
    capsys.readouterr()
    assert cli.main([*argv[:5], "--seeds", "0,x"]) == 2
    assert "--seeds '0,x'" in capsys.readouterr().err
    one = str(tmp_path / "one")  # `prm-jax rl`: one run as the comparison runs it
    assert cli.main(["rl", "--config", argv[2] + ":outcome,tiny", "--workdir", one, *argv[6:]]) == 0
    assert (
        json.load(open(os.path.join(one, "final.json")))["curve"]
        == json.load(open(os.path.join(wd, "outcome", "seed_0", "final.json")))["curve"]
    )  # the same seed's run, whoever calls it
    not_rl = os.path.join(ROOT, "experiments", "arith_prm.py:bce,tiny")
    assert cli.main(["rl", "--config", not_rl, "--workdir", str(tmp_path / "x")]) == 2
    assert "not an RL stage config" in capsys.readouterr().err


def test_plot_draws_markers_where_a_series_has_under_three_points(tmp_path, monkeypatch):
    """A TINY comparison has two iterations: its moving-average panel holds one point per source,
    which a marker-less line would not draw at all."""
    from prm_jax import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    runs = {"outcome": _fake({0: [0.2, 0.3]}), "prm_min": _fake({0: [0.2, 0.4]}, {0: [1, 1, 1, 1]})}
    for r in runs.values():  # two iterations each
        for seed in r:
            r[seed] = (r[seed][0], r[seed][1][:2])
    rl_report.plot(runs, [0], str(tmp_path / "x.png"), "caption")
    train_ax = figs[0].axes[3]
    assert "2-iteration mean" in train_ax.get_title()
    lines = [ln for ln in train_ax.lines if len(ln.get_xdata()) == 1]
    assert len(lines) == 2 and all(ln.get_marker() not in (None, "None", "") for ln in lines)
