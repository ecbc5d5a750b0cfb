"""The main job end to end in its --quick form: every stage runs, the report has the tables, stages resume."""

import json
import os

import jax
import numpy as np
import pytest

from prm_jax import demo, loop
from prm_jax.configs.demo import VERIFIERS
from prm_jax.data import arith

QUICK = demo.default_config("quick")


@pytest.mark.slow
def test_demo_quick_end_to_end_and_resume(tmp_path, capsys):
    workdir = str(tmp_path / "demo")
    out = demo.run(workdir, QUICK)
    for f in ("report.md", "accuracy_vs_n.png", "solution_steps.png", "eval.json", "labels/train.jsonl"):
        assert os.path.getsize(os.path.join(workdir, f)) > 0, f
    res = out["eval"]
    n = QUICK.search.n
    assert res["n"] == n and res["problems"] == QUICK.search.problems
    for name in (
        "majority",
        "bce/min/argmax",
        "implicit/min/argmax",
        "orm/last/argmax",
        "pav/min/argmax",
        "bce/min/weighted_vote",
        "beam_bce",
        "beam_pav",
    ):
        c = res["curves"][name]
        assert all(0.0 <= lo <= a <= hi <= 1.0 for a, lo, hi in zip(c["acc"], c["lo"], c["hi"])), name
    # + the label-free confidence of the policy and of the verifiers' base
    assert set(res["auroc"]) == set(VERIFIERS) | {"likelihood", "base_likelihood"}
    # PAV beam: ranked by Q^pi (the soft-label verifier of the policy) + alpha * A^mu (the PAV), answered by Q^pi
    assert res["beam_terms"]["beam_pav"] == {
        "rank": f"qpi + {QUICK.search.alpha} * A(pav)",
        "answer": "qpi",
    }
    from prm_jax.checkpoint import Checkpointer

    for name, field in (
        ("qpi", "labels"),
        ("bce", "hard_labels"),
        ("exact", "exact_labels"),
    ):  # Q^pi learns the soft MC fraction
        ck = Checkpointer(os.path.join(workdir, name), async_save=False)
        try:
            assert ck.restore_config()["data"]["label_field"] == field, name
        finally:
            ck.close()
    # The score-head verifiers are probes on the frozen base (train_test covers the mechanism); the
    # implicit PRM trains the whole model. Every demo model reads the likelihood features.
    for name in VERIFIERS:
        v = demo.verifier_config(workdir, QUICK, name)
        assert (v.optim.head_only_steps >= v.train.steps) == (name != "implicit"), name
        assert v.model.score_likelihood and QUICK.policy.model.score_likelihood
        assert v.init.workdir == os.path.join(workdir, "base"), name
    # The verifier base: the policy's weights trained on for its own steps; every score head's body is
    # the base's, unchanged (a probe), and differs from the policy's.
    base_log = [json.loads(line) for line in open(os.path.join(workdir, "base", "metrics.jsonl"))]
    assert base_log[-1]["step"] == QUICK.verifier_base.train.steps
    _, base_params, base_cfg = loop.load_trained(os.path.join(workdir, "base"))
    assert base_cfg.init.workdir == os.path.join(workdir, "policy")
    policy_params = loop.load_trained(os.path.join(workdir, "policy"))[1]
    bce_params = loop.load_trained(os.path.join(workdir, "bce"))[1]
    body = lambda p: {k: v for k, v in p.items() if k != "score_head"}  # noqa: E731
    for a, b in zip(jax.tree.leaves(body(bce_params)), jax.tree.leaves(body(base_params)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved_any = [
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(body(base_params)), jax.tree.leaves(body(policy_params)), strict=True)
    ]
    assert any(moved_any)
    assert res["tokens"]["beam_pav_gen_per_problem"] > 0 and res["tokens"]["verifier_bce_per_problem"] > 0
    keys = [f["key"] for f in out["figures"]]
    assert keys == [
        "bce_weighted_vote_beats_majority",
        "bce_argmax_does_not_fall",
        "pav_beam_beats_orm_and_bce_beam",
        "bce_step_auroc",
        "exact_step_auroc",
        "implicit_close_to_bce",
        "implicit_vote_beats_majority",
        "bce_beats_likelihood",
        "bce_beats_base_likelihood",
        "omega_fewer_rollouts",
    ]
    # report.json: every figure with its claim, values and CIs, as the markdown states them
    rep = json.load(open(os.path.join(workdir, "report.json")))
    assert [f["key"] for f in rep["figures"]] == keys and rep["seed"] == QUICK.seed
    assert all(f["claim"] and isinstance(f["holds"], bool) for f in rep["figures"])
    wv = rep["figures"][0]["values"]["bce_weighted_vote"]
    assert wv["value"] == res["curves"]["bce/min/weighted_vote"]["acc"][-1]
    assert wv["ci"] == [
        res["curves"]["bce/min/weighted_vote"]["lo"][-1],
        res["curves"]["bce/min/weighted_vote"]["hi"][-1],
    ]
    # each comparison also has its paired difference on the same problems (beams included)
    pav = rep["figures"][2]["values"]
    assert pav["difference_vs_bce_beam"]["value"] == pytest.approx(
        np.mean(np.asarray(res["per_problem_acc"]["beam_pav"][0]) - res["per_problem_acc"]["beam_bce"][0])
    )
    assert pav["difference_vs_orm"] is not None and rep["figures"][0]["values"]["difference"] is not None
    assert "bce/min/argmax" in rep["last_doubling"] and "beam_pav" not in rep["last_doubling"]
    # the oracle row is pass@N: at least every method's accuracy at every N
    orc = res["curves"]["oracle"]["acc"]
    for k, c in res["curves"].items():
        if len(c["ns"]) == len(orc):
            assert all(a <= o + 1e-12 for a, o in zip(c["acc"], orc)), k
    # Every labelled record carries exact step truth, and labels are probabilities.
    rows = [json.loads(line) for line in open(os.path.join(workdir, "labels/train.jsonl"))]
    assert rows and all(len(r["meta"]["step_correct"]) == len(r["completions"]) == len(r["labels"]) for r in rows)
    assert all(r["exact_labels"] == [float(x) for x in r["meta"]["step_correct"]] for r in rows)
    assert all(0.0 <= x <= 1.0 for r in rows for x in r["labels"] + r["q"])
    # The held-out validation split: its own problems, scored by every verifier.
    val = [json.loads(line) for line in open(os.path.join(workdir, "labels/val.jsonl"))]
    assert val and not {r["prompt"] for r in val} & {r["prompt"] for r in rows}
    assert out["labels"]["train_solutions"] == len(rows) and out["labels"]["val_solutions"] == len(val)
    assert res["val"]["solutions"] == len(val) and set(VERIFIERS) <= set(res["val"])
    assert res["val"]["steps"] == sum(len(r["completions"]) for r in val)
    # The implicit PRM's data: outcome labels only, on problems the validation split does not hold,
    # as many as the outcome budget buys at the labelling stage's tokens per solution.
    # They also carry the task's exact step correctness (no rollout needed): the exact-label PRM's data.
    outcomes = [json.loads(line) for line in open(os.path.join(workdir, "outcomes/train.jsonl"))]
    assert outcomes and all(set(r) == {"prompt", "steps", "correct", "exact_labels"} for r in outcomes)
    assert all(r["exact_labels"] == [float(x) for x in arith.check_steps(r["prompt"], r["steps"])] for r in outcomes)
    assert not {r["prompt"] for r in outcomes} & {r["prompt"] for r in val}
    n_out = demo.outcome_problem_count(out["labels"], QUICK.labelling.outcome_budget, QUICK.labelling.samples)
    assert out["labels"]["outcome_problems"] == n_out and len({r["prompt"] for r in outcomes}) <= n_out
    assert out["labels"]["outcome_solutions"] == len(outcomes) > len(rows)
    om = {f["key"]: f for f in rep["figures"]}["omega_fewer_rollouts"]["values"]  # and each search vs the truth
    assert om["omega_first_error_exact_match"] == out["labels"]["omega_first_error_exact_match"]
    assert om["mc_first_error_exact_match"] == out["labels"]["mc_hard_first_error_exact_match"]
    assert om["full_mc_repeat_matches_full_mc"] == out["labels"]["full_mc_repeat_first_error_matches_full_mc"]
    assert om["own_draw_matches_full_mc"] == out["labels"]["omega_own_draw_first_error_matches_full_mc"]
    # OmegaPRM on full MC's rollouts: its agreement is that of the binary search run on the written hard
    # labels (the first solutions are the first problems', all in the training split)
    sub = rows[: out["labels"]["omega_solutions"]]
    assert len(sub) == out["labels"]["omega_solutions"] and sub[-1]["prompt"] not in {r["prompt"] for r in val}

    def bisect(hard, correct):
        lo, hi = 0, len(hard) - 1
        while lo < hi and not correct:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if hard[mid] > 0 else (lo, mid)
        return -1 if correct else lo

    first_zero = [next((i for i, h in enumerate(r["hard_labels"]) if h == 0), -1) for r in sub]
    sim = [bisect(r["hard_labels"], r["correct"]) for r in sub]
    assert om["first_error_matches_full_mc"] == pytest.approx(np.mean(np.asarray(sim) == first_zero))
    fig = {f["key"]: f for f in rep["figures"]}["implicit_close_to_bce"]  # states both label budgets
    assert fig["values"]["outcome_solutions"] == len(outcomes) and fig["values"]["train_solutions"] == len(rows)
    assert f"outcome labels on {len(outcomes):,} solutions" in fig["measured"]
    right = [r for r in outcomes if r["correct"]]  # and how many of their right labels are luck
    if right:
        lucky = sum(min(r["exact_labels"]) < 1.0 for r in right) / len(right)
        assert fig["values"]["outcome_right_with_wrong_step"] == pytest.approx(lucky)
        assert f"{lucky:.0%} of the solutions labelled right have a wrong step" in fig["measured"]
    else:  # the quick policy may get nothing right: no share to state
        assert "outcome_right_with_wrong_step" not in fig["values"]
    imp = demo.verifier_config(workdir, QUICK, "implicit")
    assert imp.data.source == "outcome_jsonl" and imp.data.path == os.path.join(workdir, "outcomes", "train.jsonl")
    ex = demo.verifier_config(workdir, QUICK, "exact")
    assert ex.data.source == "stepwise_jsonl" and ex.data.path == os.path.join(workdir, "outcomes", "train.jsonl")
    fig = {f["key"]: f for f in rep["figures"]}["exact_step_auroc"]
    assert fig["values"]["exact_solutions"] == len(outcomes) and fig["values"]["bce_solutions"] == len(rows)
    assert f"exact step labels on {len(outcomes):,} solutions, MC labels on {len(rows):,}" in fig["measured"]
    # Verifier steps follow the passes over the training solutions, not a fixed count.
    for name in VERIFIERS:
        n_rows = len(outcomes) if QUICK.verifier_data[name] == "outcomes" else len(rows)
        want = max(1, -(-int(QUICK.verifier_passes * n_rows) // QUICK.verifiers.bce.train.batch_size))
        last = [json.loads(line) for line in open(os.path.join(workdir, name, "metrics.jsonl"))][-1]
        assert last["step"] == want, (name, last["step"], want)
    report = open(os.path.join(workdir, "report.md")).read()
    assert "| majority |" in report and "Step AUROC" in report and "Held-out validation" in report
    assert all(f'"{k}"' in report for k in ("policy", "labels", "bce", "eval", "total"))
    # The search CLI on the demo's runs: an implicit PRM (its reference found from the run's config).
    from prm_jax import cli

    capsys.readouterr()
    assert (
        cli.main(
            [
                "search",
                "--policy-workdir",
                f"{workdir}/policy",
                "--verifier-workdir",
                f"{workdir}/implicit",
                "--verifier-kind",
                "implicit",
                "--method",
                "best_of_n",
                "--n",
                "2",
                "--arith",
                "2",
                "--max-new-tokens",
                "32",
            ]
        )
        == 0
    )
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["problems"] == 2 and 0 <= got["accuracy"] <= 1 and got["gen_tokens_per_problem"] > 0
    # Second run: every stage is found and skipped; the report is rewritten from eval.json.
    logs = []
    again = demo.run(workdir, QUICK, log=logs.append)
    # policy, base, labels, outcomes, the verifiers, eval
    assert sum("skipped" in line for line in logs) == 4 + len(VERIFIERS) + 1
    # its report keeps the time each stage took when it ran (not the near-zero time of skipping it)
    assert {k: v for k, v in again["wall"].items() if k != "total"} == {
        k: v for k, v in out["wall"].items() if k != "total"
    }
    assert again["wall"]["total"] == pytest.approx(sum(v for k, v in out["wall"].items() if k != "total"), abs=0.2)
    # The sampler benchmark replays the labelling calls on this policy (a smoke run; speed is a figure
    # of the benchmark, never asserted).
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "benchmarks", "sampler_demo.py"),
            "--policy-workdir",
            f"{workdir}/policy",
            "--problems",
            "4",
            "--samples",
            "1",
            "--k",
            "1",
            "--max-batch",
            "16",
            "--before",
            "HEAD",  # a worktree: its worker must import that prm_jax, not this checkout's
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert r.returncode == 0 and "after (this checkout)" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert "before (HEAD)" in r.stdout and "speed-up" in r.stdout, r.stdout[-2000:]
    # and the eval stage's beam search calls
    cmd = [sys.executable, os.path.join(root, "benchmarks", "sampler_demo.py"), "--policy-workdir", f"{workdir}/policy"]
    r = subprocess.run(
        cmd + ["--path", "beam", "--problems", "1", "--max-batch", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert r.returncode == 0 and "beam search sampler calls: 1 problems" in r.stdout, (
        r.stdout[-2000:] + r.stderr[-2000:]
    )
    # A run folder can be moved: its implicit PRM's reference is the policy in the folder it is in now.
    moved = str(tmp_path / "moved")
    os.rename(workdir, moved)
    implicit = demo.load_verifiers(moved, ["implicit"])["implicit"]
    policy_params = loop.load_trained(os.path.join(moved, "policy"))[1]
    for a, b in zip(jax.tree.leaves(implicit.ref_params), jax.tree.leaves(policy_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A verifier run trained outside the demo run (label_budget.py's variants) finds its reference in
    # the run it came from: `ref_root`; without it the reference is looked for beside the variant.
    import shutil

    variants = tmp_path / "variants"
    shutil.copytree(os.path.join(moved, "implicit"), variants / "implicit")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        demo.load_verifiers(str(variants), ["implicit"])
    variant = demo.load_verifiers(str(variants), ["implicit"], ref_root=moved)["implicit"]
    for a, b in zip(jax.tree.leaves(variant.ref_params), jax.tree.leaves(policy_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_outcome_problem_count_buys_the_budget_at_the_measured_tokens_per_solution():
    stats = {"sampler_tokens": 30_000, "solutions_sampled": 100, "solution_tokens_sampled": 6_000}
    # 60 tokens a solution, 8 a problem: 480 tokens a problem; 30,000 / 480 = 62.5 -> 63 problems
    assert demo.outcome_problem_count(stats, 1.0, 8) == 63
    assert demo.outcome_problem_count(stats, 2.0, 8) == 125
    assert demo.outcome_problem_count(dict(stats, sampler_tokens=0), 1.0, 8) == 1


def test_report_values_without_a_defined_ci():
    """An AUROC of one class is NaN when computed and null when eval.json is read back (a resumed run)."""
    from prm_jax import report

    assert report._fmt({"value": 0.5, "ci": [0.4, 0.6]}) == "0.500 [0.40, 0.60]"
    assert report._fmt({"value": float("nan"), "ci": [float("nan"), float("nan")]}) == "n/a"
    assert report._fmt({"value": None, "ci": [None, None]}) == "n/a"
    assert report._fmt({"value": 0.7, "ci": None}) == "0.700"


def test_report_compares_methods_on_the_same_problems():
    """The figures' paired differences read each method's per-problem row at the figure's N (ORM at the
    N whose tokens match the PAV beam's, not its last), hand-computed here; an eval.json without
    per-problem rows (written before they were kept) still reports, without them."""
    from prm_jax import evaluate, report

    rng = np.random.default_rng(0)
    P, ns = 8, [1, 2, 4]
    names = ["majority", "bce/min/weighted_vote", "bce/min/argmax", "orm/last/argmax", "implicit/min/argmax"]
    names += ["likelihood/min/argmax", "base_likelihood/min/argmax", "implicit/min/weighted_vote"]
    rows = {k: rng.integers(0, 3, size=(len(ns), P)) / 2.0 for k in names}
    rows.update(beam_pav=rng.integers(0, 2, size=(1, P)) * 1.0, beam_bce=rng.integers(0, 2, size=(1, P)) * 1.0)

    def curve(k):
        r = rows[k]
        m = r.mean(1).tolist()
        return {
            "ns": [4] if k.startswith("beam") else ns,
            "acc": m,
            "lo": [x - 0.1 for x in m],
            "hi": [x + 0.1 for x in m],
        }

    res = {
        "n": 4,
        "mean_gen_tokens_per_solution": 50.0,
        "tokens": {"beam_pav_gen_per_problem": 100.0},  # = best-of-2's generated tokens
        "curves": {k: curve(k) for k in rows},
        "auroc": {"bce": 0.9, "exact": 0.96},
        "per_problem_acc": {k: r.tolist() for k, r in rows.items()},
        "bootstrap": {"n_boot": 300, "seed": 5},
    }
    figs = {f["key"]: f for f in report.figures(res)}
    vote = figs["bce_weighted_vote_beats_majority"]["values"]["difference"]
    assert vote["value"] == pytest.approx(np.mean(rows["bce/min/weighted_vote"][2] - rows["majority"][2]))
    d = rows["bce/min/weighted_vote"][2] - rows["majority"][2]
    reps = d[np.random.default_rng(5).integers(0, P, size=(300, P))].mean(1)
    assert vote["ci"] == pytest.approx(np.quantile(reps, [0.025, 0.975]).tolist())
    pav = figs["pav_beam_beats_orm_and_bce_beam"]
    assert "orm_best_of_2" in pav["values"]
    assert pav["values"]["difference_vs_orm"]["value"] == pytest.approx(
        np.mean(rows["beam_pav"][0] - rows["orm/last/argmax"][1])
    )
    assert pav["values"]["difference_vs_bce_beam"]["value"] == pytest.approx(
        np.mean(rows["beam_pav"][0] - rows["beam_bce"][0])
    )
    assert "paired differences: vs ORM" in pav["measured"]
    imp = figs["implicit_close_to_bce"]["values"]["difference"]
    assert imp["value"] == pytest.approx(np.mean(rows["implicit/min/argmax"][2] - rows["bce/min/argmax"][2]))
    imp_wv = figs["implicit_vote_beats_majority"]
    assert imp_wv["values"]["difference"]["value"] == pytest.approx(
        np.mean(rows["implicit/min/weighted_vote"][2] - rows["majority"][2])
    )
    assert imp_wv["holds"] == (rows["implicit/min/weighted_vote"][2].mean() > rows["majority"][2].mean())
    steps = figs["bce_argmax_does_not_fall"]["values"]
    assert steps["N=4 - N=2"]["value"] == pytest.approx(np.mean(rows["bce/min/argmax"][2] - rows["bce/min/argmax"][1]))
    lik = figs["bce_beats_likelihood"]["values"]["difference"]
    assert lik["value"] == pytest.approx(np.mean(rows["bce/min/argmax"][2] - rows["likelihood/min/argmax"][2]))
    base = figs["bce_beats_base_likelihood"]
    assert base["values"]["difference"]["value"] == pytest.approx(
        np.mean(rows["bce/min/argmax"][2] - rows["base_likelihood/min/argmax"][2])
    )
    assert base["holds"] == (rows["bce/min/argmax"][2].mean() > rows["base_likelihood/min/argmax"][2].mean())
    # a difference's CI is evaluate.paired_difference's, and the holds rules still read the point values
    assert lik["ci"] == pytest.approx(
        list(
            evaluate.paired_difference(rows["bce/min/argmax"][2], rows["likelihood/min/argmax"][2], n_boot=300, seed=5)[
                1:
            ]
        )
    )
    # the last doubling of N, per method of the report (beams and the oracle have none)
    last = report.last_doubling(res)
    assert set(last) == set(names)  # MAIN's methods this result has, and the weighted votes it has
    assert last["implicit/min/argmax"]["value"] == pytest.approx(
        np.mean(rows["implicit/min/argmax"][2] - rows["implicit/min/argmax"][1])
    )
    old = {k: v for k, v in res.items() if k not in ("per_problem_acc", "bootstrap")}
    assert report.last_doubling(old) == {}
    old_figs = {f["key"]: f for f in report.figures(old)}
    assert old_figs["bce_weighted_vote_beats_majority"]["values"]["difference"] is None
    assert "paired" not in old_figs["pav_beam_beats_orm_and_bce_beam"]["measured"]
    assert [f["holds"] for f in old_figs.values()] == [f["holds"] for f in figs.values()]


def test_verifier_data_reads_the_named_stage_and_rejects_another(tmp_path):
    for stage, n in (("labels", 2), ("outcomes", 3)):
        os.makedirs(tmp_path / stage)
        (tmp_path / stage / "train.jsonl").write_text("{}\n" * n + "\n")
    c = demo.default_config("quick").copy_and_resolve_references()
    assert demo.verifier_data(str(tmp_path), c, "bce") == (str(tmp_path / "labels" / "train.jsonl"), 2)
    assert demo.verifier_data(str(tmp_path), c, "exact") == (str(tmp_path / "outcomes" / "train.jsonl"), 3)
    c.verifier_data.exact = "label"
    with pytest.raises(ValueError, match="config.verifier_data.exact: 'label'; choose 'labels' or 'outcomes'"):
        demo.verifier_data(str(tmp_path), c, "exact")


def test_verifier_base_steps_choose_where_the_verifiers_start(tmp_path):
    """The verifiers start from WORKDIR/base (the implicit PRM's reference is the policy); with 0 base
    steps the base stage trains nothing and they start from the policy."""
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "train.jsonl").write_text("{}\n" * 4)
    c = demo.default_config("quick").copy_and_resolve_references()
    assert c.verifier_base.train.steps > 0 and c.verifier_base.train.seed == c.seed + 3
    for steps, stage in ((c.verifier_base.train.steps, "base"), (0, "policy")):
        c.verifier_base.train.steps = steps
        assert demo.verifier_init(str(tmp_path), c) == str(tmp_path / stage)
        v = demo.verifier_config(str(tmp_path), c, "bce")
        assert v.init.workdir == str(tmp_path / stage) and not v.init.ref_workdir
    c.verifier_data.implicit = "labels"
    for steps, stage in ((3, "base"), (0, "policy")):
        c.verifier_base.train.steps = steps
        imp = demo.verifier_config(str(tmp_path), c, "implicit")
        assert imp.init.workdir == str(tmp_path / stage) and imp.init.ref_workdir == str(tmp_path / "policy")
    logs = []
    demo.stage_base(str(tmp_path), c, logs.append)  # 0 steps: nothing trained, no folder made
    assert logs == ["base: 0 steps, the verifiers start from the policy: skipped"]
    assert not (tmp_path / "base").exists()
