"""The objectives on real encoded batches, against numpy references computed from one plain forward:
the ORM's position and target, outcome masks, the implicit PRM's token range (training = scoring),
and packing (equal losses where it is exact, a clear refusal where it is not)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prm_jax import model, objectives, scoring
from prm_jax.data import tokenize
from prm_jax.data.arith import CharTokenizer
from prm_jax.data.records import Record
from prm_jax.verifier import Verifier

TOK = CharTokenizer()
MARK = "<step>"
CFG = model.ModelConfig(
    vocab_size=TOK.vocab_size,
    d_model=32,
    n_layers=1,
    n_heads=2,
    n_kv_heads=1,
    head_dim=16,
    mlp_dim=64,
    max_seq_len=256,
    init_std=0.2,
)


@pytest.fixture(scope="module")
def params():
    init = jax.jit(model.init_params, static_argnums=0)
    return init(CFG, jax.random.PRNGKey(0)), init(CFG, jax.random.PRNGKey(1))


def _batch(records, seq=96, steps=4, add_eos=False, pack=False):
    exs = [tokenize.encode_example(r, TOK, marker=MARK, max_len=seq, max_steps=steps, add_eos=add_eos) for r in records]
    if pack:
        return tokenize.pack(exs, seq, steps * len(records), TOK.pad_id)
    return tokenize.pad_batch(exs, seq, steps, TOK.pad_id)


def _np_bce(z, y):
    return -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))


def _score_at_markers(p, rec):
    """Returns the score-head logits at each marker of `rec`, from one unpadded forward."""
    ids = tokenize.encode_prefix(rec.problem, rec.steps, TOK, marker=MARK)
    out = model.forward(CFG, p, jnp.asarray(ids[None]), lm_head=False)
    return np.asarray(out.score[0], np.float64)[np.flatnonzero(ids == TOK.step_id)]


def test_orm_reads_the_last_existing_step_with_the_outcome(params):
    """Outcome-only records (no step labels) and ProcessBench-style labels [1, 0, None]: the ORM reads
    the last step that exists, against the outcome (before: loss 0 on 0 steps / step 1)."""
    p, _ = params
    recs = [
        Record("a = 1. Find a.", ["x", "y"], None, outcome=1.0),  # outcome_jsonl form
        Record("b = 2. Find b.", ["p", "q", "r"], [1.0, 0.0, None], outcome=0.0),
    ]  # processbench form
    loss, aux = objectives.make_loss_fn("orm", CFG)(p, None, _batch(recs))
    z = [_score_at_markers(p, r)[-1] for r in recs]
    want = np.mean([_np_bce(z[0], 1.0), _np_bce(z[1], 0.0)])
    assert float(aux["metrics"]["num_steps"]) == 2
    assert float(loss) == pytest.approx(want, rel=1e-4)


def test_outcome_losses_mask_unknown_and_truncated_outcomes(params):
    """A record without an outcome trained as outcome 0, and a truncated one kept the full outcome."""
    p, ref = params
    known = Record("a = 1. Find a.", ["x", "y"], None, outcome=1.0)
    unknown = Record("c = 3. Find c.", ["u", "v"], None, outcome=None)
    long = Record("d = 4. Find d.", ["w" * 30, "z" * 30, "k" * 30], None, outcome=0.0)  # truncated at 64
    batch = _batch([known, unknown, long], seq=64)
    assert batch["outcome_mask"].tolist() == [True, False, False]
    z = _score_at_markers(p, known)[-1]
    loss, aux = objectives.make_loss_fn("orm", CFG)(p, None, batch)
    assert float(aux["metrics"]["num_steps"]) == 1 and float(loss) == pytest.approx(_np_bce(z, 1.0), rel=1e-4)
    only = _batch([known], seq=64)
    ce_all, m_all = objectives.make_loss_fn("implicit_ce", CFG, {"beta": 0.5})(p, ref, batch)
    ce_one, _ = objectives.make_loss_fn("implicit_ce", CFG, {"beta": 0.5})(p, ref, only)
    assert float(m_all["metrics"]["num_examples"]) == 1
    assert float(ce_all) == pytest.approx(float(ce_one), rel=1e-5)


def test_loader_counts_masked_outcomes():
    from prm_jax.data import pipeline

    recs = [Record("a = 1. Find a.", ["x"], None, outcome=None), Record("b = 1. Find b.", ["y"], None, outcome=1.0)]
    it = pipeline.TrainIterator(
        pipeline.ListSource(recs), TOK, pipeline.Encoding(MARK, 64, 4), batch_size=2, shuffle=False
    )
    next(it)
    assert it.counts["outcome_masked"] == 1


def test_implicit_reward_at_scoring_equals_the_training_reward(params):
    """Training appends EOS (add_eos=True); the verifier scores the same solution without it. Both read
    r over the step tokens, so q_T at scoring equals the trained r (before: -0.125 vs -0.025 kind of gap)."""
    p, ref = params
    recs = [
        Record("a = 5, b = 7. c = a + b. Find c.", ["c = a + b = 5 + 7 = 12"], None, outcome=1.0),
        Record("a = 2. b = a - 1. Find b.", ["b = a - 1", "= 1"], None, outcome=0.0),
    ]
    beta = 0.3
    _, aux = objectives.make_loss_fn("implicit_ce", CFG, {"beta": beta})(p, ref, _batch(recs, add_eos=True))
    ver = Verifier("implicit", CFG, p, TOK, marker=MARK, ref_params=ref, beta=beta)
    out = ver.score_all([r.problem for r in recs], [r.steps for r in recs])
    q_T = [q[-1] for q in out["q"]]
    np.testing.assert_allclose(np.asarray(aux["outcome_scores"]), q_T, rtol=1e-4, atol=1e-5)
    # and the step q_t of training equal the verifier's
    for b, q in enumerate(out["q"]):
        np.testing.assert_allclose(np.asarray(aux["step_scores"])[b, : len(q)], q, rtol=1e-4, atol=1e-5)


def test_implicit_verifier_never_materialises_full_logits(params, monkeypatch):
    """The implicit verifier goes through the chunked log-prob path: the model is never asked for
    its [B, L, V] logits (before: forward(lm_head=True))."""
    p, ref = params
    real = model.forward

    def forward(*a, lm_head=True, **k):
        if lm_head:
            raise AssertionError("full [B, L, V] logits requested")
        return real(*a, lm_head=lm_head, **k)

    monkeypatch.setattr(model, "forward", forward)
    ver = Verifier("implicit", CFG, p, TOK, marker=MARK, ref_params=ref, beta=0.1, logprob_chunk=8)
    out = ver.score_all(["a = 9. Find a. x"], [["a = 9", "9"]])
    assert len(out["q"][0]) == 2 and np.all(np.isfinite(out["q"][0]))


def test_implicit_last_and_beam_value_are_q_T(params):
    """`last` of an implicit PRM is q_T (= the sum of its step rewards), not the last step's reward;
    beam ranking reads the same value."""
    from prm_jax import search

    p, ref = params
    ver = Verifier("implicit", CFG, p, TOK, marker=MARK, ref_params=ref, beta=0.5)
    probs, steps = ["a = 1. b = a + 1. Find b."] * 2, [["b = a + 1", "= 2"], ["b = 3", "x", "y"]]
    out = ver.score_all(probs, steps)
    last = search.solution_scores(out["rewards"], "last", step_values=out["values"])
    np.testing.assert_allclose(last, [r.sum() for r in out["rewards"]], rtol=1e-5)
    assert not np.allclose(last, [r[-1] for r in out["rewards"]])
    ranked, _ = search.last_step_ranker(ver)(probs, steps)
    np.testing.assert_allclose(ranked, last, rtol=1e-5)


@pytest.mark.parametrize("objective", ["bce", "pav", "sft"])
def test_packed_rows_give_the_unpacked_loss(params, objective):
    """Packing is exact for the step-level objectives and SFT: same examples, same loss."""
    p, _ = params
    recs = [
        Record("a = 1. Find a.", ["x = 1", "y"], [1.0, 0.0], outcome=0.0, q_values=[0.6, 0.1], v0=0.5),
        Record("b = 2. Find b.", ["p", "q = 2", "r"], [1.0, 1.0, 0.5], outcome=1.0, q_values=[0.9, 0.8, 1.0], v0=0.7),
        Record("c = 3. Find c.", ["u"], [0.0], outcome=0.0, q_values=[0.2], v0=0.3),
    ]
    loss_fn = objectives.make_loss_fn(objective, CFG)
    flat, _ = loss_fn(p, None, _batch(recs, seq=160, steps=4))
    packed_batch = _batch(recs, seq=160, steps=4, pack=True)
    assert packed_batch["tokens"].shape[0] == 1 and packed_batch["num_examples"].tolist() == [3]
    # step ids index the row's steps, one id per step across the packed examples
    ids = packed_batch["step_ids"][0]
    assert sorted(set(ids[ids >= 0].tolist())) == list(range(6))
    packed, _ = loss_fn(p, None, packed_batch)
    assert float(packed) == pytest.approx(float(flat), rel=1e-5)


@pytest.mark.parametrize(
    "objective,loss_cfg", [("orm", {}), ("implicit_ce", {}), ("implicit_dpo", {}), ("pav", {"pav_mode": "mse_adv"})]
)
def test_objectives_that_cannot_pack_refuse_it(objective, loss_cfg, tmp_path):
    from ml_collections import ConfigDict

    from prm_jax import loop

    assert objectives.packing_error(objective, loss_cfg)
    cfg = ConfigDict(
        {"objective": objective, "loss": dict(loss_cfg), "data": {"pack": True}, "train": {"batch_size": 2}}
    )
    with pytest.raises(ValueError, match="data.pack=True is not supported.*per example"):
        loop.run(cfg, str(tmp_path), progress=False)
    assert objectives.packing_error("bce") is None and objectives.packing_error("pav") is None


def test_training_rejects_token_ids_beyond_the_vocabulary(tmp_path):
    """A model narrower than its tokenizer: the first batch is an error naming the tokenizer and id."""
    from prm_jax import config as config_lib
    from prm_jax import loop, sharding

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    cfg = config_lib.load_config(str(root / "experiments" / "arith_prm.py:bce,tiny"))
    config_lib.apply_overrides(
        cfg, ["--config.model.vocab_size=16", "--config.train.steps=1", "--config.train.ckpt_every=-1"]
    )
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    with pytest.raises(
        ValueError, match=r"token id \d+ from tokenizer 'char' is outside the model vocabulary of size 16"
    ):
        loop.run(cfg, str(tmp_path), progress=False, mesh=mesh)


# --- likelihood features of the score head (ModelConfig.score_likelihood) ---------------------------

LCFG = CFG.replace(score_likelihood=True)


@pytest.fixture(scope="module")
def lik_params():
    p = jax.jit(model.init_params, static_argnums=0)(LCFG, jax.random.PRNGKey(3))
    p["score_head"]["likelihood"] = jnp.asarray([0.7, -0.3], jnp.float32)
    return p


def _np_likelihood_logits(p, rec):
    """Returns head logit + w . (running min, step min) of token log-probs, from numpy on full logits."""
    ids = tokenize.encode_prefix(rec.problem, rec.steps, TOK, marker=MARK)
    out = model.forward(LCFG, p, jnp.asarray(ids[None]), lm_head=True)
    logits = np.asarray(out.logits[0], np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    logp = np.r_[0.0, logits[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]]
    marks = np.flatnonzero(ids == TOK.step_id)
    starts = np.r_[len(tokenize.encode_prefix(rec.problem, [], TOK, marker=MARK)), marks[:-1] + 1]
    m = np.array([logp[s : e + 1].min() for s, e in zip(starts, marks)])
    w = np.asarray(p["score_head"]["likelihood"], np.float64)
    head = np.asarray(out.score[0], np.float64)[marks]
    return head + w[0] * np.minimum.accumulate(m) + w[1] * m


def test_step_min_logprobs_against_a_loop():
    logp = np.array([[-0.1, -2.0, -0.5, -0.3, -4.0, -0.2, 0.0], [-1.0, -0.2, -0.7, 0.0, 0.0, 0.0, 0.0]], np.float32)
    ids = np.array([[-1, 0, 0, 1, 2, 2, -1], [0, 0, 2, -1, -1, -1, -1]], np.int32)  # row 1: step 1 has no tokens
    m, pm = scoring.step_min_logprobs(jnp.asarray(logp), jnp.asarray(ids), 4)
    want = np.zeros((2, 4))
    for b in range(2):
        for t in range(4):
            sel = logp[b][ids[b] == t]
            want[b, t] = sel.min() if sel.size else 0.0
    np.testing.assert_allclose(np.asarray(m), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pm), np.minimum.accumulate(want, axis=1), rtol=1e-6)
    assert np.asarray(m).tolist()[1] == pytest.approx([-1.0, 0.0, -0.7, 0.0])


def test_likelihood_logits_equal_numpy_in_training_and_in_the_verifier(lik_params):
    recs = [
        Record("a = 5, b = 7. c = a + b. Find c.", ["c = a + b = 5 + 7 = 12", "12"], [1.0, 1.0]),
        Record("a = 2. b = a - 1. Find b.", ["b = a - 1 = 2 - 1 = 3"], [0.0]),
    ]
    want = [_np_likelihood_logits(lik_params, r) for r in recs]
    got = np.asarray(objectives.score_logits(LCFG, lik_params, _batch(recs)))
    ver = Verifier("score", LCFG, lik_params, TOK, marker=MARK)
    probs = ver.step_scores([r.problem for r in recs], [r.steps for r in recs])
    for b, w in enumerate(want):
        np.testing.assert_allclose(got[b, : len(w)], w, rtol=1e-4, atol=1e-5)
        assert np.all(got[b, len(w) :] == 0)
        np.testing.assert_allclose(probs[b], 1 / (1 + np.exp(-w)), rtol=1e-4, atol=1e-6)
    # the feature moves the logit: without it the same params give the plain head
    plain = np.asarray(objectives.score_logits(CFG, {k: v for k, v in lik_params.items()}, _batch(recs)))
    assert not np.allclose(plain[0, :2], got[0, :2])


def test_likelihood_feature_passes_no_gradient_to_the_model(lik_params):
    """The feature is the model's own log-prob of the shown tokens: BCE must not train the language
    model through it (it lowered the likelihood of every token of a step labelled wrong)."""
    p = dict(lik_params, score_head=dict(lik_params["score_head"]))
    p["score_head"]["kernel"] = jnp.zeros_like(p["score_head"]["kernel"])  # only the feature reaches the loss
    recs = [Record("a = 5. b = a + 2. Find b.", ["b = a + 2 = 5 + 2 = 7"], [0.0])]
    grads = jax.grad(lambda q: objectives.make_loss_fn("bce", LCFG)(q, None, _batch(recs))[0])(p)
    trunk = [g for k, g in grads.items() if k != "score_head"]
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(trunk))
    assert float(jnp.abs(grads["score_head"]["likelihood"]).max()) > 0


def test_likelihood_verifier_is_the_running_least_token_probability(params):
    from prm_jax.verifier import likelihood_verifier

    p, _ = params
    rec = Record("a = 4. b = a * 2. Find b.", ["b = a * 2 = 4 * 2 = 8", "8", "done"])
    ver = likelihood_verifier(CFG, p, TOK, marker=MARK)
    probe = dict(
        p,
        score_head={"kernel": jnp.zeros((CFG.d_model, 1)), "bias": jnp.zeros(1), "likelihood": jnp.asarray([1.0, 0.0])},
    )
    want = 1 / (1 + np.exp(-_np_likelihood_logits(probe, rec)))
    got = ver.step_scores([rec.problem], [rec.steps])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.all(np.diff(got) <= 1e-7) and np.all(got <= 0.5)  # a running minimum of log-probs <= 0


def test_score_likelihood_needs_a_score_head():
    with pytest.raises(ValueError, match="score_likelihood=True needs score_head=True"):
        CFG.replace(score_head=False, score_likelihood=True)


def test_likelihood_head_without_step_ids_is_named(lik_params):
    recs = [Record("a = 1. Find a.", ["a = 1"], [1.0])]
    batch = {k: v for k, v in _batch(recs).items() if k != "step_ids"}
    with pytest.raises(ValueError, match=r"score_likelihood reads batch\['step_ids'\]"):
        objectives.score_logits(LCFG, lik_params, batch)
