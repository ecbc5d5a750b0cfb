"""verifier_group: one forward for probes of one body gives each verifier's own scores and token counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prm_jax import model, verifier_group
from prm_jax.data.arith import CharTokenizer
from prm_jax.verifier import Verifier, likelihood_verifier

PROBLEMS = ["a = 1. b = a + 2. Find b.", "a = 5, b = 7. c = a * b, d = c - 3. Find d.", "x = 3. Find x * 2."] * 3
STEPS = [
    ["b = a + 2 = 1 + 2 = 3"],
    ["c = a * b = 5 * 7 = 35", "d = c - 3 = 35 - 3 = 32"],
    ["x * 2 = 6", "6", "done"],
] * 3


def _cfg(tok):
    return model.ModelConfig.preset(
        "tiny", vocab_size=tok.vocab_size, d_model=32, head_dim=8, mlp_dim=64, init_std=0.2, score_likelihood=True
    )


def _copy(tree):  # equal values, new objects: what loading one checkpoint per run gives
    return jax.tree.map(lambda x: jnp.asarray(np.array(x)), tree)


def _verifiers():
    tok = CharTokenizer()
    cfg = _cfg(tok)
    init = jax.jit(model.init_params, static_argnums=0)
    policy = init(cfg, jax.random.PRNGKey(0))
    tuned = init(cfg, jax.random.PRNGKey(1))  # a fully tuned model: another body
    vs = []
    for k, name in enumerate(("bce", "pav")):
        p = _copy(policy)
        head = init(cfg, jax.random.PRNGKey(10 + k))["score_head"]
        p["score_head"] = dict(head, likelihood=jnp.asarray([0.5 * k, 1.0 - k], jnp.float32))
        vs.append(Verifier("score", cfg, p, CharTokenizer(), marker="<step>", name=name, max_batch=4))
    vs.append(likelihood_verifier(cfg, _copy(policy), CharTokenizer(), marker="<step>", max_batch=4))
    vs.append(
        Verifier(
            "implicit",
            cfg,
            tuned,
            CharTokenizer(),
            marker="<step>",
            ref_params=_copy(policy),
            beta=0.1,
            name="implicit",
            max_batch=4,
        )
    )
    vs.append(Verifier("score", cfg, _copy(tuned), CharTokenizer(), marker="<step>", name="other", max_batch=4))
    vs.append(Verifier("score", cfg, _copy(policy), CharTokenizer(), marker="<step>", name="wide", max_batch=8))
    return vs


def test_share_bodies_rebinds_only_equal_bodies_and_groups_them():
    vs = _verifiers()
    assert verifier_group.groups(vs) == [[j] for j in range(len(vs))]  # separate copies: nothing shared yet
    heads = [v.params["score_head"] for v in vs if v.kind == "score"]
    assert verifier_group.share_bodies(vs) == 5  # every verifier after the first (tokenizers at least)
    bce, pav, lik, imp, other, wide = vs
    for v in (pav, lik, wide):
        assert all(v.params[k] is bce.params[k] for k in ("embed", "layers", "lm_head", "final_norm"))
    assert imp.ref_params["layers"] is bce.params["layers"] and imp.params["layers"] is not bce.params["layers"]
    assert other.params["layers"] is not bce.params["layers"]  # another body stays its own
    assert [v.params["score_head"] for v in vs if v.kind == "score"] == heads  # heads untouched
    assert len({id(v.tokenizer) for v in vs}) == 1
    # max_batch changes the batches, so `wide` is scored on its own though its body is shared
    assert verifier_group.groups(vs) == [[0, 1, 2, 3], [4], [5]]


def test_group_scores_equal_each_verifiers_own_scores_and_tokens():
    alone = _verifiers()
    own = [v.score_all(PROBLEMS, STEPS) for v in alone]
    vs = _verifiers()
    verifier_group.share_bodies(vs)
    together = verifier_group.score_all(vs, PROBLEMS, STEPS)
    for v, a, b in zip(vs, own, together):
        assert sorted(a) == sorted(b), v.name
        for k in ("rewards", "values", "probs"):
            assert len(a[k]) == len(PROBLEMS)
            for x, y in zip(a[k], b[k]):
                np.testing.assert_allclose(y, x, rtol=0, atol=1e-6, err_msg=f"{v.name} {k}")
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert [v.tokens_scored for v in vs] == [v.tokens_scored for v in alone]
    # the implicit PRM's tokens count twice (two models), as scored alone
    assert vs[3].tokens_scored == 2 * vs[0].tokens_scored
    # values() is the beam rankers' view of the same scores
    for (vals, toks), b in zip(verifier_group.values(vs, PROBLEMS, STEPS), together):
        assert all(np.array_equal(x, y) for x, y in zip(vals, b["values"]))
        np.testing.assert_array_equal(toks, b["tokens"])


def test_score_all_rejects_mismatched_inputs_and_handles_none():
    vs = _verifiers()
    verifier_group.share_bodies(vs)
    with pytest.raises(ValueError, match="3 problems but 2 step lists"):
        verifier_group.score_all(vs, PROBLEMS[:3], STEPS[:2])
    assert [len(o["values"]) for o in verifier_group.score_all(vs[:4], [], [])] == [0] * 4
    assert [len(vals) for vals, _ in verifier_group.values(vs[:4], [], [])] == [0] * 4
