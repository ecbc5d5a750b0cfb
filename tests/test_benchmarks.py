"""Tests of benchmarks/: FLOP and byte counts against independent counts, the derived table math,
and every benchmark script end to end in --tiny mode (CPU, prm-jax and the HF peer) so they never rot."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
import sampler as sampler_bench  # noqa: E402
import summary  # noqa: E402
import train_step  # noqa: E402


def test_param_counts_match_prm_jax():
    """The HF side of this check is in the end-to-end test (the peer reports its models' sizes)."""
    import jax
    from prm_jax import model

    # The full Qwen2.5-0.5B shape against prm-jax's own parameter tree (abstract: nothing allocated).
    cfg = model.ModelConfig.preset("qwen2.5-0.5b", score_head=False)
    leaves = jax.tree_util.tree_leaves(model.abstract_params(cfg))
    assert sum(math.prod(x.shape) for x in leaves) == common.QWEN25_05B.total_params() == 494_032_768


def test_flops_per_token_hand_values():
    s = common.QWEN25_05B
    n_body = 24 * (896 * 896 + 2 * 896 * 128 + 896 * 896 + 896 + 2 * 128 + 3 * 896 * 4864 + 2 * 896) + 896
    assert s.non_embedding_params() == n_body == 357_898_112
    attn = 24 * 896 * 2048
    assert common.flops_per_token(s, 2048, "prm") == 6 * (n_body + 2 * 896) + 12 * attn
    assert common.flops_per_token(s, 2048, "implicit") == 8 * (n_body + 151936 * 896) + 16 * attn
    assert common.flops_per_token(s, 2048, "score") == 2 * (n_body + 2 * 896) + 4 * attn
    with pytest.raises(ValueError, match="unknown FLOP kind"):
        common.flops_per_token(s, 2048, "dpo")


def test_decode_bytes_floor_hand_value():
    t = common.TINY
    weights = (74_304 + 512 * 64) * 2  # body + tied table, bf16
    kv_per_pos = 2 * 2 * 2 * 16 * 2 * 1  # k and v, layers, kv heads, head_dim, bytes, batch
    # prompt 2, two new tokens: step 0 attends 2 cached positions, step 1 attends 3.
    assert common.decode_bytes_floor(t, 1, 2, 2) == 2 * weights + kv_per_pos * (2 + 3)


def test_time_steps_median_and_bad_input():
    seen = []
    t = common.time_steps(lambda: seen.append(1), lambda x: x, warmup=2, iters=3)
    assert len(seen) == 5 and len(t["times_s"]) == 3
    assert t["min_s"] <= t["median_s"] <= t["max_s"]
    with pytest.raises(ValueError, match="iters"):
        common.time_steps(lambda: None, lambda x: x, 0, 0)


def test_derive_tables_hand_computed():
    rows = [
        {"variant": "bce", "kind": "prm", "tokens": 1000, "median_s": 0.5, "flops_per_token": 1e9, "peak_bytes": 2e9},
        {
            "variant": "implicit",
            "kind": "implicit",
            "tokens": 1000,
            "median_s": 1.0,
            "flops_per_token": 2e9,
            "peak_bytes": 3e9,
        },
        {"variant": "bce_xla_attn", "error": "OOM"},
    ]
    peer = {
        "tasks": {
            "prm_eager": {"tokens": 1000, "median_s": 2.0},
            "prm_compile": {"tokens": 1000, "median_s": 1.0},
            "implicit_eager": {"tokens": 1000, "median_s": 4.0, "peak_bytes": 12e9},
        }
    }
    out = {(r["impl"], r["name"]): r for r in train_step.derive(rows, peer, 1e13, common.TINY, 64)}
    bce, imp = out[("prm-jax", "bce")], out[("prm-jax", "implicit")]
    assert bce["tokens_per_s"] == 2000 and bce["mfu"] == pytest.approx(2000 * 1e9 / 1e13)
    assert bce["vs_peer"] == pytest.approx(2.0) and bce["vs_peer_eager"] == pytest.approx(4.0)
    assert imp["vs_peer"] == pytest.approx(4.0) and imp["mem_vs_peer"] == pytest.approx(0.25)
    assert out[("prm-jax", "bce_xla_attn")]["error"] == "OOM"
    assert out[("hf-peer", "prm_compile")]["mfu"] == pytest.approx(
        1000 * common.flops_per_token(common.TINY, 64, "prm") / 1e13
    )
    verdicts = {t["target"].split()[0]: t["verdict"] for t in summary.targets(list(out.values()), [])}
    assert verdicts == {"PRM": "MISSED", "implicit": "MISSED", "sampler": "not measured"}

    sec = {
        "jax": {"new_tokens": 100, "median_s": 0.1},
        "peer": {"tasks": {"generate": {"new_tokens": 100, "median_s": 10.0}}},
    }
    s = {r["impl"]: r for r in sampler_bench.derive(sec, common.TINY, 1, 2, 2, bandwidth=1e6)}
    floor_s = common.decode_bytes_floor(common.TINY, 1, 2, 2) / 1e6
    assert s["prm-jax"]["vs_generate"] == pytest.approx(100.0)
    assert s["prm-jax"]["floor_fraction"] == pytest.approx(floor_s / 0.1)


@pytest.mark.slow
def test_implicit_loss_variants_agree_with_the_objective():
    """The benchmark's 'before' (full [B,L,V] log-probs) and bf16-head variants compute the same
    loss as prm_jax.objectives' implicit CE, on a policy that differs from its reference."""
    import jax
    import jax.numpy as jnp
    from prm_jax import model, objectives

    t = common.TINY
    cfg = model.ModelConfig.preset(
        "tiny",
        vocab_size=t.vocab,
        d_model=t.d_model,
        n_layers=t.layers,
        n_heads=t.heads,
        n_kv_heads=t.kv_heads,
        head_dim=t.head_dim,
        mlp_dim=t.mlp,
        qkv_bias=True,
        tie_embeddings=True,
        dtype="float32",
    )
    ref = model.init_params(cfg, jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(ref)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    policy = jax.tree_util.tree_unflatten(
        tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    batch = {k: jnp.asarray(v) for k, v in train_step.make_batch("implicit_ce", 2, 64, t.vocab).items()}
    # One jitted program for all three (op-by-op dispatch of the model is very slow on this CPU).
    want, full, bf16 = jax.jit(
        lambda p, r, b: (
            objectives.make_loss_fn("implicit_ce", cfg, {"beta": train_step.BETA, "logprob_chunk": 32})(p, r, b)[0],
            train_step._full_logprob_loss(cfg)(p, r, b)[0],
            train_step._bf16_head_loss(cfg, chunk=32)(p, r, b)[0],
        )
    )(policy, ref, batch)
    assert abs(float(want) - math.log(2)) > 1e-3  # the reward is not trivially 0
    assert float(full) == pytest.approx(float(want), rel=1e-5)
    assert float(bf16) == pytest.approx(float(want), rel=1e-5)  # f32 compute: the cast is a no-op


def test_make_batch_layout():
    b = train_step.make_batch("bce", 3, 128, 50)
    assert b["tokens"].shape == (3, 128) and b["tokens"].min() >= 2 and b["tokens"].max() < 50
    assert (np.diff(b["step_pos"], axis=1) > 0).all() and b["step_pos"].min() >= 1
    i = train_step.make_batch("implicit_ce", 2, 128, 50)
    for r in range(2):  # each step closes at its marker: the last token of the step
        for t, p in enumerate(i["step_pos"][r]):
            assert i["step_ids"][r, p] == t and (p + 1 == 128 or i["step_ids"][r, p + 1] == t + 1)
    assert (i["response_mask"] == (i["step_ids"] >= 0)).all() and not i["response_mask"][:, :32].any()


def test_table_and_results_file(tmp_path):
    text = common.table([{"a": 1.23456, "b": None}, {"a": 12345.6, "b": "x"}], ["a", "b"])
    assert text.splitlines()[2] == "| 1.23   | - |" and "12,346" in text
    long = common.table([{"e": "x" * 200 + "|\n"}], ["e"], max_cell=20)
    assert long.splitlines()[2] == "| " + "x" * 17 + "... |"
    common.update_results("s", "k", {"v": 1}, tmp_path)
    common.update_results("s", "k2", {"v": 2}, tmp_path)
    assert common.read_json(common.RESULTS, tmp_path) == {"s": {"k": {"v": 1}, "k2": {"v": 2}}}
    assert common.datasheet_peak("NVIDIA H100 80GB HBM3") == 989.4e12 and common.datasheet_peak("cpu") is None


def test_benchmark_modules_import_without_the_data_stack():
    """The GPU image has no ml_collections / tfds / grain / tensorboardX / math-verify."""
    code = (
        "import sys\n"
        "for m in ('ml_collections', 'tensorflow_datasets', 'grain', 'tensorboardX', 'math_verify',"
        " 'tensorflow'): sys.modules[m] = None\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import prm_jax.model, prm_jax.train, prm_jax.sampling, prm_jax.scoring, prm_jax.sharding\n"
        "import common, train_step, sampler, scoring, summary, peer_hf\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_run_gpu_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "run_gpu.sh")], check=True)


def _run(args, out):
    env = dict(os.environ, OUT=str(out), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_all_benchmarks_tiny_end_to_end(tmp_path, monkeypatch, capsys):
    """Every script in --tiny mode: prm-jax and the peer run, numbers land in results.json.

    train_step and sampler run their workers in this process (one JAX and one torch import: the
    2-core CPU is the budget); scoring runs as on the GPU, each worker in a subprocess.
    """

    monkeypatch.setenv("OUT", str(tmp_path))
    assert train_step.main(["--tiny", "--in-process", "--jax", "bce,implicit"]) == 0
    assert sampler_bench.main(["--tiny", "--in-process"]) == 0
    _run(["benchmarks/scoring.py", "--tiny"], tmp_path)
    capsys.readouterr()
    assert summary.main(["--tiny", "--markdown", str(tmp_path / "s.md")]) == 0
    text = capsys.readouterr().out
    res = json.loads((tmp_path / "results.json").read_text())

    ts = res["train_step"]
    for name in ("bce", "implicit"):
        assert "error" not in ts[name], ts[name]
        assert ts[name]["median_s"] > 0 and np.isfinite(ts[name]["loss_last"])
        assert ts[name]["loss_last"] != ts[name]["loss_first"]  # the optimizer moved the params
    # At the first step the policy equals the frozen reference: r = 0, so the CE loss is ln 2,
    # in prm-jax and in the peer.
    assert ts["implicit"]["loss_first"] == pytest.approx(math.log(2), abs=1e-6)
    peer = ts["peer"]["tasks"]
    assert peer["implicit_eager"]["loss_first"] == pytest.approx(math.log(2), abs=1e-6)
    assert peer["prm_eager"]["median_s"] > 0 and "skipped" in peer["prm_compile"]
    # The peer's models have the counted shape: Qwen2ForCausalLM = body + tied table; the
    # token-classification model has no output projection but a [2, D] + [2] score head.
    assert peer["implicit_eager"]["n_params"] == common.TINY.total_params() == 107_072
    assert peer["prm_eager"]["n_params"] == common.TINY.total_params() + 2 * common.TINY.d_model + 2

    assert res["sampler"]["jax"]["new_tokens"] == 4 * 8 and res["sampler"]["jax"]["median_s"] > 0
    assert res["sampler"]["peer"]["tasks"]["generate"]["median_s"] > 0
    assert res["scoring"]["jax"]["median_s"] > 0 and res["scoring"]["peer"]["tasks"]["score"]["median_s"] > 0
    assert "## targets" in text and (tmp_path / "s.md").read_text().strip() == text.strip()


def test_run_worker_keeps_results_before_a_timeout_and_reports_failures():
    emit_then_hang = (
        "import json, time\n"
        "print('RESULT ' + json.dumps({'tasks': {'a': {'median_s': 1.0}}}), flush=True)\n"
        "time.sleep(60)\n"
    )
    res = common.run_worker(["-c", emit_then_hang], timeout_s=5)
    assert res["tasks"] == {"a": {"median_s": 1.0}} and res["error"].startswith("timeout")
    res = common.run_worker(["-c", "raise SystemExit(3)"], timeout_s=30)
    assert res["error"] == "exit code 3, no RESULT line"
    assert common.run_worker(["-c", "pass"], 30, deadline=__import__("time").time() + 5)["error"].startswith("skipped")


def test_implicit_log_ratios_sum_to_the_verifiers_q_and_vanish_against_itself():
    """benchmarks/implicit_log_ratio.py: the step tokens' log pi/pi_ref of a solution sum to the implicit
    verifier's q_T / beta (the reward it ranks by), and a model against itself has ratio 0."""
    import jax

    import implicit_log_ratio as ilr
    from prm_jax import model, search
    from prm_jax.data.arith import CharTokenizer
    from prm_jax.verifier import Verifier

    tok = CharTokenizer()
    cfg = model.ModelConfig.preset("tiny", vocab_size=tok.vocab_size, init_std=0.2)  # the demo's size
    p = model.init_params(cfg, jax.random.PRNGKey(0))
    ref = model.init_params(cfg, jax.random.PRNGKey(1))
    problems = ["a = 5, b = 7. c = a + b. Find c.", "a = 2. b = a - 1. Find b."]
    sols = [[search.Solution(["c = a + b = 5 + 7 = 12"])], [search.Solution(["b = a - 1", "= 1"]), search.Solution([])]]
    beta = 0.2
    ver = Verifier("implicit", cfg, p, tok, marker="<step>", ref_params=ref, beta=beta)
    ratio, ref_lp = ilr.log_ratios(ver, problems, sols)
    q = ver.score_all([problems[0], problems[1]], [sols[0][0].steps, sols[1][0].steps])["q"]
    n0 = len(ver._encode(problems[0], sols[0][0].steps)["tokens"]) - len(ver._encode(problems[0], [])["tokens"])
    assert ratio.shape == ref_lp.shape and np.all(ref_lp <= 0)
    np.testing.assert_allclose(ratio[:n0].sum() * beta, q[0][-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ratio[n0:].sum() * beta, q[1][-1], rtol=1e-4, atol=1e-5)
    same = Verifier("implicit", cfg, p, tok, marker="<step>", ref_params=p, beta=beta)
    np.testing.assert_allclose(ilr.log_ratios(same, problems, sols)[0], 0.0, atol=1e-6)


def test_implicit_step_rewards_split_by_the_tasks_truth():
    """benchmarks/implicit_log_ratio.py: each step's implicit reward lands in the right or the wrong
    array as `arith.check_steps` marks it (hand-made steps: 5 + 7 = 12 right, = 13 wrong), equal to the
    verifier's own step reward."""
    import jax

    import implicit_log_ratio as ilr
    from prm_jax import model, search
    from prm_jax.data.arith import CharTokenizer
    from prm_jax.verifier import Verifier

    tok = CharTokenizer()
    cfg = model.ModelConfig.preset("tiny", vocab_size=tok.vocab_size, init_std=0.2)
    ver = Verifier(
        "implicit",
        cfg,
        model.init_params(cfg, jax.random.PRNGKey(0)),
        tok,
        marker="<step>",
        ref_params=model.init_params(cfg, jax.random.PRNGKey(1)),
        beta=0.2,
    )
    q1, q2 = "a = 5, b = 7. c = a + b, d = c - 2. Find d.", "a = 5, b = 7. c = a + b. Find c."
    good, bad = ["c = a + b = 5 + 7 = 12", "d = c - 2 = 12 - 2 = 10"], ["c = a + b = 5 + 7 = 13"]
    sols = [[search.Solution(good), search.Solution([])], [search.Solution(bad)]]
    right, wrong = ilr.step_rewards_by_truth(ver, [q1, q2], sols)
    r = ver.score_all([q1, q2], [good, bad])["rewards"]
    np.testing.assert_allclose(right, np.asarray(r[0]), rtol=1e-6)
    np.testing.assert_allclose(wrong, np.asarray(r[1]), rtol=1e-6)
    assert right.shape == (2,) and wrong.shape == (1,)


def test_eval_problems_validation_draw_leaves_the_held_out_problems_out():
    from prm_jax.configs import demo as demo_config

    from prm_jax import demo

    c = demo_config.get_config("quick")
    # a task this small repeats problems, so the validation draw meets held-out ones it must leave out
    c.task.update(min_given=1, max_given=1, min_steps=1, max_steps=1, max_operand=3)
    held = common.eval_problems(c, "held-out")
    val = common.eval_problems(c, "validation")
    assert held == demo._problems(c.task, c.seed + 2, c.search.problems)
    assert demo.held_out_problems(c, 3) == held[:3]  # policy_steps.py scores a prefix of the same draw
    assert set(held) & set(demo._problems(c.task, c.seed + 4, 2 * c.search.problems))
    assert len(val) == c.search.problems and not set(held) & set(val)
    c.seed = 1
    assert common.eval_problems(c, "validation") != val  # the draw follows the seed
    with pytest.raises(ValueError, match="score_on 'test'"):
        common.eval_problems(c, "test")


def test_label_budget_counts_dpo_pairs_per_problem(tmp_path):
    import label_budget
    from prm_jax import jsonio

    rows = [("a", True), ("a", False), ("a", False), ("b", True), ("b", True), ("c", False), ("d", True), ("d", False)]
    path = str(tmp_path / "o.jsonl")
    jsonio.write_jsonl(path, [{"prompt": p, "steps": ["1"], "correct": ok} for p, ok in rows])
    # by hand: a 1 pair (1 right, 2 wrong), b and c none, d 1
    assert label_budget.count_pairs(path, "outcome_jsonl") == 2


def test_demo_train_step_overrides_and_bad_input():
    import demo_train_step
    from prm_jax.config import UnknownKeyError

    cfg = demo_train_step.policy_config("model.scan_layers=False")
    assert cfg.model.scan_layers is False and cfg.train.batch_size == 32  # the demo's, otherwise untouched
    assert demo_train_step.policy_config("train.batch_size=8").train.batch_size == 8
    assert demo_train_step.policy_config("model.n_layers=3").model.n_layers == 3
    plain = demo_train_step.policy_config("")
    assert plain.model.scan_layers is None and plain.model.preset == "tiny"  # '' leaves the demo's config
    with pytest.raises(ValueError, match="must look like"):
        demo_train_step.policy_config("model.scan_layers")
    with pytest.raises(UnknownKeyError, match="no_such_key"):
        demo_train_step.policy_config("model.no_such_key=1")
    with pytest.raises(ValueError, match="does not fit the type"):
        demo_train_step.policy_config("train.batch_size=maybe")


def test_policy_steps_counts_right_and_lucky_answers_by_the_tasks_own_checks(tmp_path, capsys):
    import policy_steps
    from prm_jax import jsonio
    from prm_jax.data import arith

    with pytest.raises(SystemExit, match="positive integers"):
        policy_steps.parse_steps("0,5")
    with pytest.raises(SystemExit, match="positive integers"):
        policy_steps.parse_steps("ten")
    out = tmp_path / "ps"
    res = policy_steps.main(
        ["--variant", "quick", "--steps", "3", "--out", str(out), "--problems", "6", "--samples", "2"]
    )
    recs = jsonio.read_jsonl(str(out / "steps_3" / "samples.jsonl"))
    # recomputed from the written solutions with the task's own checks (an unfinished one is wrong)
    right = [arith.is_correct(r["prompt"], r["steps"]) and r["correct"] for r in recs]
    assert res[3]["solutions"] == len(recs) > 0
    assert res[3]["right"] == pytest.approx(np.mean(right))
    lucky = [not all(arith.check_steps(r["prompt"], r["steps"])) for r, ok in zip(recs, right) if ok]
    assert res[3]["right_with_wrong_step"] == (pytest.approx(np.mean(lucky)) if lucky else None)
    assert "RESULT seed 0 steps 3" in capsys.readouterr().out
    # a second call reuses the trained policy folder (no training) and draws the same samples
    again = policy_steps.main(
        ["--variant", "quick", "--steps", "3", "--out", str(out), "--problems", "6", "--samples", "2"]
    )
    assert again[3]["sft_seconds"] < 1.0 < res[3]["sft_seconds"]
    assert "RESULT seed 0 steps 3: SFT reused," in capsys.readouterr().out  # no made-up SFT time
    assert {k: v for k, v in again[3].items() if k != "sft_seconds"} == {
        k: v for k, v in res[3].items() if k != "sft_seconds"
    }
    # every solution's first-error kind, recounted with the task's own checks (none when all right)
    kinds = [arith.first_error_kind(r["prompt"], r["steps"]) for r in recs]
    want = {k: kinds.count(k) / len(recs) for k in set(kinds) if k is not None}
    assert res[3]["first_error"] == pytest.approx(want) and sum(want.values()) <= 1.0


def test_policy_steps_applies_config_overrides_and_refuses_unknown_keys(tmp_path):
    import policy_steps

    out = tmp_path / "ps"
    args = ["--variant", "quick", "--steps", "2", "--out", str(out), "--problems", "2", "--samples", "1"]
    policy_steps.main(args + ["--config.policy.optim.lr=0.0123", "--config.policy.optim.warmup=0"])
    logged = [json.loads(line) for line in open(out / "steps_2" / "policy" / "metrics.jsonl")]
    assert logged[-1]["step"] == 2 and logged[-1]["lr"] == pytest.approx(0.0123)  # constant after no warm-up
    with pytest.raises(SystemExit, match="lrr"):
        policy_steps.main(args + ["--config.policy.optim.lrr=1"])
    with pytest.raises(SystemExit, match="--config.key=value"):
        policy_steps.main(args + ["--bogus=3"])
    with pytest.raises(SystemExit, match="--seed N"):  # not silently replaced by --seed's default
        policy_steps.main(args + ["--config.seed=3"])
