"""RL iterations: rollouts as the sampler drew them, each reward source through the pg train step."""

import os

import jax
import numpy as np
import pytest

from prm_jax import config as cfg_lib
from prm_jax import rl, sampling, sharding, train
from prm_jax.data import arith

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_positions_close_each_step_at_its_marker_or_eos():
    # marker [7], eos 2; ids: "a a <m> b <m> c <eos>" after a 5-token prompt
    assert rl.step_positions([9, 9, 7, 8, 7, 6, 2], [7], 2, 5) == [7, 9, 11]
    assert rl.step_positions([9, 7, 2], [7], 2, 0) == [1]  # marker then EOS: no trailing step
    assert rl.step_positions([9, 9, 9], [7], 2, 0) == []  # cut by the token budget: no step closed
    assert rl.step_positions([9, 4, 7, 2], [4, 7], 2, 1) == [3]  # a two-token marker closes at its last


@pytest.fixture(scope="module")
def tiny():
    """A random tiny policy (char tokenizer) with its pg setup on one device, and a random verifier."""
    from prm_jax import model, verifier

    tok = arith.CharTokenizer()
    c = cfg_lib.load_config(os.path.join(ROOT, "experiments", "arith_prm.py:sft,tiny"))
    c.objective = "pg"
    c.loss.kl_coef = 0.05
    c.optim.update(lr=1e-3, warmup=0)  # the first update moves (the PRIME PRM steps once per iteration)
    c.train.update(steps=100, batch_size=8)
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    s = train.setup(c, mesh=mesh, vocab_size=tok.vocab_size)
    params = model.init_params(s.model_cfg, jax.random.PRNGKey(0))
    smp = sampling.Sampler(
        s.model_cfg, params, pad_id=tok.pad_id, eos_id=tok.eos_id, step_id=tok.marker_ids("<step>")[0], max_batch=16
    )
    pol = sampling.Policy(smp, tok, marker="<step>", answer_fn=arith.final_answer)
    vcfg = model.ModelConfig.preset("tiny", vocab_size=tok.vocab_size, d_model=32, n_heads=2, n_kv_heads=1, mlp_dim=64)
    ver = verifier.Verifier("score", vcfg, model.init_params(vcfg, jax.random.PRNGKey(1)), tok, marker="<step>")
    return s, params, pol, ver, mesh, c


def _problems(n, seed=0):
    g = np.random.default_rng(seed)
    ps = [arith.sample_problem(arith.ArithConfig(min_steps=1, max_steps=2), g) for _ in range(n)]
    return [p.text for p in ps], [p.answer for p in ps]


def test_rollout_batch_holds_the_sampled_tokens(tiny):
    s, params, pol, ver, mesh, c = tiny
    texts, gold = _problems(2)
    r = rl.rollout(pol, texts, gold, lambda a, g: a == g, 3, jax.random.PRNGKey(0), max_new_tokens=40)
    b = r.batch
    assert b["tokens"].shape[0] == 6 and b["tokens"].shape[1] % rl.LEN_BUCKET == 0
    assert int(b["response_mask"].sum()) == r.gen_tokens
    for i in range(6):
        prompt = list(pol.encode(r.problems[i], []))
        n = int(b["segment_ids"][i].sum())
        assert b["tokens"][i, : len(prompt)].tolist() == prompt
        gen = b["tokens"][i, len(prompt) : n].tolist()
        steps, ended = pol.decode(gen, bool(gen) and gen[-1] == pol.sampler.eos_id)
        assert steps == r.steps[i] and int(b["step_mask"][i].sum()) == len(steps)
    assert r.problems == [texts[0]] * 3 + [texts[1]] * 3


# prm_sum and pav share prm_min's path (a frozen verifier's step values): the slow tier runs them
@pytest.mark.parametrize(
    "source", [pytest.param(x, marks=pytest.mark.slow) if x in ("prm_sum", "pav") else x for x in rl.SOURCES]
)
def test_each_reward_source_runs_an_iteration_through_the_pg_step(tiny, source):
    s, params, pol, ver, mesh, c = tiny
    prime = None
    if source == "prime":
        pc = c.copy_and_resolve_references()
        pc.objective = "implicit_ce"
        ps = train.setup(pc, mesh=mesh, vocab_size=pol.tokenizer.vocab_size)
        prime = (ps, train.init_state(ps, params=params, ref_params=params))
    state = train.init_state(s, params=params, ref_params=params)
    agent = rl.RL(s, state, pol, source=source, group=2, verifiers={"prm": ver, "qpi": ver, "pav": ver}, prime=prime)
    texts, gold = _problems(4, seed=3)
    m = agent.iteration(texts, gold, lambda a, g: a == g, jax.random.PRNGKey(5), max_new_tokens=32)
    assert int(agent.state.step) == 1 and np.isfinite(m["loss"]) and 0.0 <= m["accuracy"] <= 1.0
    assert "kl" in m and m["gen_tokens"] > 0
    if source in ("prm_sum", "prm_min"):
        assert "prm_reward" in m
    if source == "prime":
        assert np.isfinite(m["prime_loss"]) and int(agent.prime[1].step) == 1
    if source == "outcome" and m["accuracy"] in (0.0, 1.0):
        # every group all wrong (or all right): RLOO leaves no signal, and at pi = pi_ref no KL gradient
        assert m["grad_norm"] == 0.0
    else:
        assert m["grad_norm"] > 0.0


def test_bad_settings_are_errors(tiny):
    s, params, pol, ver, mesh, c = tiny
    state = train.init_state(s, params=params, ref_params=params)
    with pytest.raises(ValueError, match="reward source"):
        rl.RL(s, state, pol, source="orm", group=2)
    with pytest.raises(ValueError, match="online implicit PRM"):
        rl.RL(s, state, pol, source="prime", group=2)


@pytest.fixture(scope="module")
def sft_workdir(tmp_path_factory):
    """A tiny SFT policy run (4 steps of experiments/arith_policy_sft.py:tiny) to start RL from."""
    from prm_jax import loop

    wd = str(tmp_path_factory.mktemp("sft"))
    c = cfg_lib.load_config(os.path.join(ROOT, "experiments", "arith_policy_sft.py:tiny"))
    c.train.update(steps=4, batch_size=8)  # 8 rows: one per simulated device
    loop.run(c, wd, progress=False)
    return wd


def _rl_config(policy_workdir, iterations):
    c = cfg_lib.load_config(os.path.join(ROOT, "experiments", "arith_rl.py:prime,tiny"))
    c.policy_workdir = policy_workdir
    c.iterations = iterations
    c.ckpt_every = 1
    c.train.mesh.shape.data = -1  # both steps data-parallel over the 8 simulated devices
    c.prime.mesh.shape.data = -1
    return c


def test_rl_run_resumes_after_sigterm_to_the_same_losses(sft_workdir, tmp_path, monkeypatch):
    """A PRIME run (policy and online PRM both move) SIGTERM'd during iteration 2 saves there and
    stops; resumed with a larger budget it replays iterations 3-4 exactly as an uninterrupted run."""
    import json
    import signal

    from prm_jax import rl_loop

    keys = ("loss", "grad_norm", "prime_loss", "accuracy", "gen_tokens", "samples_seen")
    whole = rl_loop.run(_rl_config(sft_workdir, 4), str(tmp_path / "a"), progress=False)
    rows_a = [json.loads(x) for x in open(tmp_path / "a" / "metrics.jsonl")]
    assert [r["step"] for r in rows_a] == [1, 2, 3, 4] and not whole["preempted"]

    real = rl.RL.iteration

    def iteration(self, *a, **k):
        out = real(self, *a, **k)
        if int(self.state.step) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the iteration loop: finish, save, stop
        return out

    monkeypatch.setattr(rl.RL, "iteration", iteration)
    wd = str(tmp_path / "b")
    cut = rl_loop.run(_rl_config(sft_workdir, 3), wd, progress=False)
    assert cut["preempted"] and not os.path.exists(os.path.join(wd, "final.json"))
    monkeypatch.setattr(rl.RL, "iteration", real)
    resumed = rl_loop.run(_rl_config(sft_workdir, 4), wd, progress=False)  # the budget is free to change
    rows_b = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    for ra, rb in zip(rows_a, rows_b):
        assert {k: ra[k] for k in keys} == {k: rb[k] for k in keys}
    assert resumed["curve"] == whole["curve"] and not resumed["preempted"]
    assert rows_a[-1]["grad_norm"] > 0.0 and rows_a[-1]["loss"] != rows_a[0]["loss"]


def test_rl_resume_refuses_changed_rewards(sft_workdir, tmp_path):
    from prm_jax import rl_loop

    wd = str(tmp_path / "c")
    rl_loop.run(_rl_config(sft_workdir, 1), wd, progress=False)
    c = _rl_config(sft_workdir, 2)
    c.rewards.alpha = 5.0
    with pytest.raises(ValueError, match="rewards.alpha"):
        rl_loop.run(c, wd, progress=False)
