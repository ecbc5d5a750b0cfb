"""Search: votes, best-of-N aggregation and selection, beam and PAV beam on scripted policies/verifiers."""

import collections

import jax
import numpy as np
import pytest

from prm_jax import search
from prm_jax.sampling import Continuation


def test_majority_vote_ignores_none_and_breaks_ties_by_first_seen():
    assert search.majority_vote([3, None, 5, 5, None, None]) == 5
    assert search.majority_vote([7, 3, 3, 7]) == 7
    assert search.majority_vote([None, None]) is None


def test_select_answer_argmax_and_weighted_vote():
    answers = [1, 2, 2, None, 1]
    scores = np.asarray([0.9, 0.5, 0.5, 5.0, 0.05])
    assert search.select_answer(answers, scores, "argmax") == 1  # None never wins
    assert search.select_answer(answers, scores, "weighted_vote") == 2  # 2: 1.0 > 1: 0.95
    assert search.select_answer(answers, np.asarray([0.9, 0.5, 0.3, 0, 0.2]), "weighted_vote") == 1
    with pytest.raises(ValueError, match="unknown answer selection"):
        search.select_answer(answers, scores, "best")


def _np_aggregate(s, how, temp=0.1):
    s = np.asarray(s, np.float64)
    if how == "min":
        return s.min()
    if how == "last":
        return s[-1]
    if how == "prod":
        return s.prod()
    if how == "mean":
        return s.mean()
    w = np.exp(-(s - s.min()) / temp)
    return (w / w.sum() * s).sum()


@pytest.mark.parametrize("how", ["min", "last", "prod", "mean", "softmin"])
def test_solution_scores_match_numpy_on_ragged_steps(how):
    rng = np.random.default_rng(0)
    steps = [rng.random(n).astype(np.float32) for n in (1, 4, 2, 7)]
    got = search.solution_scores(steps + [np.zeros(0)], how)
    ref = [_np_aggregate(s, how) for s in steps]
    np.testing.assert_allclose(got[:4], ref, rtol=1e-5)
    assert got[4] == -np.inf  # a solution with no step never wins


def test_best_of_n_needs_scores_and_picks_by_aggregate():
    sols = [search.Solution(["a"], 1), search.Solution(["a", "b"], 2)]
    with pytest.raises(ValueError, match="step_scores"):
        search.best_of_n(sols)
    sols[0].step_scores = np.asarray([0.6])
    sols[1].step_scores = np.asarray([0.9, 0.5])
    assert search.best_of_n(sols, "min") == 1 and search.best_of_n(sols, "last") == 1
    assert search.best_of_n(sols, "mean") == 2


class ScriptedPolicy:
    """Steps are digits; every call hands out next-steps from a fixed cycle and counts tokens."""

    def __init__(self, cycle=("1", "5", "3", "9"), end_after=3, step_tokens=2):
        self.cycle, self.end_after, self.step_tokens = cycle, end_after, step_tokens
        self.calls = []

    def continue_from(self, problems, prefixes, rng, *, mode, temperature=1.0, top_p=1.0, max_new_tokens=64, desc=None):
        self.calls.append((mode, len(problems)))
        out = []
        for j, pre in enumerate(prefixes):
            steps = list(pre)
            new = []
            while True:
                new.append(self.cycle[(j + len(steps) + len(new)) % len(self.cycle)])
                if mode == "step" or len(steps) + len(new) >= self.end_after:
                    break
            ended = len(steps) + len(new) >= self.end_after
            out.append(Continuation(new, ended, self.step_tokens * len(new) + int(ended)))
        return out

    def answer(self, steps):
        return int(steps[-1]) if steps else None


class DigitVerifier:
    """Step score = digit / 10; tokens = 10 per step scored."""

    def __init__(self, scale=10.0):
        self.scale, self.tokens_scored = scale, 0

    def step_scores(self, problems, steps_list, *, return_tokens=False):
        scores = [np.asarray([int(s) / self.scale for s in steps], np.float32) for steps in steps_list]
        toks = np.asarray([10 * len(s) for s in steps_list])
        self.tokens_scored += int(toks.sum())
        return (scores, toks) if return_tokens else scores

    values = step_scores  # a score-head verifier: the prefix value is the step probability


class TreePolicy:
    """A deterministic step tree: the k-th copy of prefix P in one call gets digit (seed(P) + k) % digits.

    A prefix of `depth` steps answers EOS alone (no new step) in a separate call, as a policy that
    emits the step marker and then EOS does. Counts the tokens it hands out per problem (2 per step,
    1 per EOS) and records every call's (problem, prefix) requests.
    """

    def __init__(self, depth=2, ends=(), digits=10):
        self.depth, self.ends, self.tokens, self.requests = depth, set(ends), collections.Counter(), []
        self.digits = digits

    @staticmethod
    def seed(prefix):
        return sum((i + 3) * int(d) for i, d in enumerate(prefix)) % 10

    def continue_from(self, problems, prefixes, rng, *, mode, temperature=1.0, top_p=1.0, max_new_tokens=64, desc=None):
        self.requests.append([(p, tuple(x)) for p, x in zip(problems, prefixes)])
        seen, out = collections.Counter(), []
        for p, pre in zip(problems, prefixes):
            k = seen[(p, tuple(pre))]
            seen[(p, tuple(pre))] += 1
            if len(pre) >= self.depth:
                c = Continuation([], True, 1)  # EOS alone
            else:
                d = str((self.seed(pre) + k) % self.digits)
                ended = d in self.ends
                c = Continuation([d], ended, 2 + int(ended))
            self.tokens[p] += c.num_tokens
            out.append(c)
        return out

    def answer(self, steps):
        return int(steps[-1]) if steps else None


def _brute_top(parents, width, keep, first=None):
    """Returns the top `keep` distinct open children (by last digit, ties to the first) of `parents`."""
    kids = []
    for par in parents:
        for k in range(first or width):
            c = par + (str((TreePolicy.seed(par) + k) % 10),)
            if c not in kids:
                kids.append(c)
    return sorted(kids, key=lambda c: -int(c[-1]))[:keep]


def test_beam_search_finished_beams_are_distinct_and_counted_honestly():
    """The issue's case: marker, then EOS in a separate call. 8 beams, width 2: every finished
    solution is distinct (before: 4 finished, 2 distinct) and equals the brute-force top-K leaves."""
    pol, ver = TreePolicy(depth=2), DigitVerifier()
    rank = search.last_step_ranker(ver)
    res = search.beam_search(
        pol, ["p", "q"], jax.random.PRNGKey(0), n_beams=8, width=2, rank_fn=rank, final_fn=rank, max_steps=6
    )
    top1 = _brute_top([()], 2, 4, first=8)
    top2 = _brute_top(top1, 2, 4)
    for r, prob in zip(res, ["p", "q"]):
        got = [tuple(s.steps) for s in r.solutions]
        assert len(got) == len(set(got)) == 4, got
        assert sorted(got) == sorted(top2)
        assert all(s.complete for s in r.solutions)
        assert r.answer == max(int(c[-1]) for c in top2)
        assert r.gen_tokens == pol.tokens[prob]  # every sample drawn counts, copies included
    assert sum(r.verifier_tokens for r in res) == ver.tokens_scored
    # round 0: 8 first steps; rounds 1 and 2: K = 4 beams x width 2 (the EOS-only round is sampled too)
    assert [len(c) for c in pol.requests] == [16, 16, 16]


def test_beam_search_refills_slots_of_finished_beams():
    """When top-ranked children end, the next-ranked open ones take their slots: K beams keep expanding."""
    pol, ver = TreePolicy(depth=3, ends=("9", "8")), DigitVerifier()
    rank = search.last_step_ranker(ver)
    res = search.beam_search(
        pol, ["p"], jax.random.PRNGKey(0), n_beams=8, width=2, rank_fn=rank, final_fn=rank, max_steps=6
    )
    # Round 0's children are the digits 0..7 (none ends); round 1 expands the top 4 (7, 6, 5, 4).
    assert pol.requests[1] == [("p", (d,)) for d in "7654" for _ in range(2)]
    # Round 1's children of 7 / 6 / 5 / 4; those ending in 8 or 9 finish, the open rest refill 4 slots.
    kids = []
    for par in ("7", "6", "5", "4"):
        for k in range(2):
            c = (par, str((TreePolicy.seed((par,)) + k) % 10))
            if c not in kids:
                kids.append(c)
    open_kids = sorted([c for c in kids if c[-1] not in "89"], key=lambda c: -int(c[-1]))
    want = [open_kids[i % len(open_kids)] for i in range(4)]
    assert [pre for _, pre in pol.requests[2][::2]] == want
    assert len(pol.requests[2]) == 8
    finished = [tuple(s.steps) for s in res[0].solutions]
    assert len(finished) == len(set(finished))
    assert {c for c in kids if c[-1] in "89"} <= set(finished)
    assert res[0].gen_tokens == pol.tokens["p"]


def test_beam_search_keeps_the_top_k_samples_counting_copies():
    """A child sampled c times holds up to c slots: each round's active set is the top K of the round's
    samples themselves (brute force: every sample ranked by its score, ties to the first drawn), while
    each distinct child is scored once."""
    pol, ver = TreePolicy(depth=3, digits=3), DigitVerifier()  # a round's samples repeat
    rank, ranked = search.last_step_ranker(ver), []

    def rank_fn(problems, parents, children):
        ranked.append([tuple(c) for c in children])
        return rank(problems, parents, children)

    search.beam_search(
        pol, ["p"], jax.random.PRNGKey(0), n_beams=8, width=2, rank_fn=rank_fn, final_fn=rank, max_steps=6
    )
    for rnd in (1, 2):
        parents = [pre for _, pre in pol.requests[rnd - 1]]
        samples = []
        for pre, n in collections.Counter(parents).items():
            samples += [pre + (str((TreePolicy.seed(pre) + k) % 3),) for k in range(n)]
        brute = sorted(samples, key=lambda c: -int(c[-1]))[:4]  # stable: ties keep the draw order
        got = [pre for _, pre in pol.requests[rnd][::2]]  # each kept beam asked `width` = 2 times
        assert sorted(got) == sorted(brute), (rnd, got, brute)
        assert len(pol.requests[rnd]) == 8
    # round 0 drew 0, 1, 2, 0, 1, 2, 0, 1: the two 2s and two of the three 1s, not [2, 1, 0, 2]
    assert sorted(pre for _, pre in pol.requests[1][::2]) == [("1",), ("1",), ("2",), ("2",)]
    # every distinct child was ranked once per round: round 0's eight samples are three children
    assert sorted(ranked[0]) == [("0",), ("1",), ("2",)] and all(len(r) == len(set(r)) for r in ranked)


def test_beam_search_finishes_open_beams_at_budget_and_validates():
    pol = ScriptedPolicy(end_after=10)
    rank = search.last_step_ranker(DigitVerifier())
    res = search.beam_search(
        pol, ["p"], jax.random.PRNGKey(0), n_beams=4, width=2, rank_fn=rank, final_fn=rank, max_steps=2
    )
    assert pol.calls[-1] == ("full", 2)
    assert all(len(s.steps) == 10 for s in res[0].solutions)
    with pytest.raises(ValueError, match="multiple of width"):
        search.beam_search(pol, ["p"], jax.random.PRNGKey(0), n_beams=3, width=2, rank_fn=rank, final_fn=rank)


def test_pav_ranker_is_q_plus_alpha_advantage():
    q, mu = DigitVerifier(10.0), DigitVerifier(20.0)
    rank = search.pav_ranker(q, mu, alpha=0.5)
    parents = [["4"], ["4"], []]
    children = [["4", "6"], ["4", "2"], ["8"]]
    score, toks = rank(["p", "p", "p"], parents, children)
    # A = mu(child last) - mu(parent last); the root's V is the mean over its first steps (one here).
    expect = [0.6 + 0.5 * (0.3 - 0.2), 0.2 + 0.5 * (0.1 - 0.2), 0.8 + 0.5 * 0.0]
    np.testing.assert_allclose(score, expect, rtol=1e-6)
    np.testing.assert_array_equal(toks, [20 + 20 + 10, 20 + 20 + 10, 10 + 10])


def test_pav_ranker_reads_a_parent_ranked_before_instead_of_scoring_it_again():
    q, mu = DigitVerifier(10.0), DigitVerifier(20.0)
    rank = search.pav_ranker(q, mu, alpha=0.5)
    rank(["p", "p"], [[], []], [["4"], ["2"]])  # round 0: both first steps ranked as children
    score, toks = rank(["p", "p"], [["4"], ["3"]], [["4", "6"], ["3", "1"]])
    # ["4"] was a child of round 0: its PAV value 0.2 is reused, no tokens; ["3"] never was: scored
    expect = [0.6 + 0.5 * (0.3 - 0.2), 0.1 + 0.5 * (0.05 - 0.15)]
    np.testing.assert_allclose(score, expect, rtol=1e-6)
    np.testing.assert_array_equal(toks, [20 + 20, 20 + 20 + 10])
    fresh, _ = search.pav_ranker(q, mu, alpha=0.5)(["p", "p"], [["4"], ["3"]], [["4", "6"], ["3", "1"]])
    np.testing.assert_allclose(score, fresh, rtol=1e-6)  # the cache changes no score


def test_sample_solutions_groups_per_problem():
    pol = ScriptedPolicy(end_after=2)
    sols = search.sample_solutions(pol, ["a", "b", "c"], 3, jax.random.PRNGKey(0))
    assert [len(x) for x in sols] == [3, 3, 3]
    assert all(s.complete and len(s.steps) == 2 and s.answer == int(s.steps[-1]) for xs in sols for s in xs)
    assert pol.calls == [("full", 9)]


def test_verifier_scores_match_unbatched_forward():
    """The jitted, padded, bucketed verifier equals one plain forward per solution (numpy log-ratios)."""
    import jax.numpy as jnp

    from prm_jax import model
    from prm_jax.data.arith import CharTokenizer
    from prm_jax.data.tokenize import encode_prefix
    from prm_jax.verifier import Verifier

    tok = CharTokenizer()
    cfg = model.ModelConfig.preset("tiny", vocab_size=tok.vocab_size, d_model=32, head_dim=8, mlp_dim=64, init_std=0.2)
    init = jax.jit(model.init_params, static_argnums=0)
    params, ref = init(cfg, jax.random.PRNGKey(0)), init(cfg, jax.random.PRNGKey(1))
    problems = ["a = 1. b = a + 2. Find b.", "a = 5, b = 7. c = a * b, d = c - 3. Find d."] * 2
    steps = [
        ["b = a + 2 = 1 + 2 = 3"],
        ["c = a * b = 5 * 7 = 35", "d = c - 3 = 35 - 3 = 32"],
        ["b = 4"],
        ["c = 1", "d = 2", "e"],
    ]
    score_v = Verifier("score", cfg, params, tok, marker="<step>", max_batch=2)
    imp_v = Verifier("implicit", cfg, params, tok, marker="<step>", ref_params=ref, beta=0.1)
    probs = score_v.step_scores(problems, steps)
    out = imp_v.score_all(problems, steps)
    fwd = jax.jit(lambda par, ids: model.forward(cfg, par, ids))
    for p, st, pr, rw, q in zip(problems, steps, probs, out["reward"], out["q"]):
        ids = encode_prefix(p, st, tok, marker="<step>")
        n_prompt = len(encode_prefix(p, [], tok, marker="<step>"))
        o = fwd(params, jnp.asarray(ids[None]))
        markers = np.flatnonzero(ids == tok.step_id)
        np.testing.assert_allclose(pr, 1 / (1 + np.exp(-np.asarray(o.score[0])[markers])), atol=1e-5)

        def logp(par):
            lg = np.asarray(fwd(par, jnp.asarray(ids[None])).logits[0], np.float64)
            lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
            return lg[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]  # log p(token t+1)

        ratio = logp(params) - logp(ref)
        bounds = [n_prompt] + [m + 1 for m in markers]
        ref_r = [0.1 * ratio[a - 1 : b - 1].sum() for a, b in zip(bounds[:-1], bounds[1:])]
        np.testing.assert_allclose(rw, ref_r, atol=1e-4)
        np.testing.assert_allclose(q, np.cumsum(ref_r), atol=1e-4)
    lens = sum(len(encode_prefix(p, s, tok, marker="<step>")) for p, s in zip(problems, steps))
    assert score_v.tokens_scored == lens and imp_v.tokens_scored == 2 * lens
    with pytest.raises(ValueError, match="ref_params"):
        Verifier("implicit", cfg, params, tok, marker="<step>")
    with pytest.raises(ValueError, match="does not fit"):
        Verifier("score", cfg, params, tok, marker="<step>", max_len=30).step_scores(problems[:1], steps[:1])


def test_pick_profile_reads_the_argmax_pick_and_its_features():
    S = search.Solution
    lp = np.log  # the least likely token's probability is stored as its log-prob
    p0 = [
        S(["a", "b"], 1, gen_tokens=10, min_logprob=lp(0.5)),
        S(["a"], 2, gen_tokens=4, min_logprob=lp(0.9)),
        S(["x", "y", "z"], None, gen_tokens=30, min_logprob=lp(0.01)),
    ]
    p1 = [
        S(["c"], 5, gen_tokens=6, min_logprob=lp(0.8)),
        S(["d", "e"], 5, gen_tokens=12, min_logprob=lp(0.1)),
        S(["f"], 7, gen_tokens=8, min_logprob=lp(0.7)),
    ]
    correct = [[True, False, False], [True, True, False]]
    # problem 0: the unanswered solution scores highest but never wins -> index 0 (right, exact);
    # problem 1: index 1 (right, but a wrong step: right by luck)
    scores = [[0.5, 0.1, 0.9], [0.2, 0.8, 0.3]]
    exact = {id(p0[0]): True, id(p1[0]): True}
    got = search.pick_profile([p0, p1], correct, scores, exact)
    assert got == {
        "accuracy": 1.0,
        "all_steps_right": 0.5,
        "right_by_luck": 0.5,
        "confidently_wrong": 0.0,
        "mean_steps": 2.0,
        "mean_gen_tokens": 11.0,
        "least_likely_token_p": pytest.approx((0.5 + 0.1) / 2),  # the median of two picks
    }
    pool = search.pick_profile([p0, p1], correct, scores, exact, pool=True)
    assert pool["accuracy"] == pytest.approx(3 / 6) and pool["right_by_luck"] == pytest.approx(1 / 6)
    assert pool["mean_gen_tokens"] == pytest.approx(70 / 6)
    assert pool["least_likely_token_p"] == pytest.approx((0.5 + 0.7) / 2)  # median of 0.01 .. 0.9
    # wrong with every token at p >= 0.5: p0[1] (0.9) and p1[2] (0.7); p0[2] (0.01) is wrong but unsure
    assert pool["confidently_wrong"] == pytest.approx(2 / 6)
    scores_wrong = [[0.1, 0.8, 0.9], [0.2, 0.1, 0.3]]  # picks p0[1] (confident) and p1[2] (0.7: confident)
    assert search.pick_profile([p0, p1], correct, scores_wrong, exact)["confidently_wrong"] == 1.0


@pytest.mark.parametrize("how", ["min", "last", "prod", "mean", "pure"])
def test_pool_scores_equal_per_problem_solution_scores(how):
    rng = np.random.default_rng(5)
    rews = [[rng.random(int(rng.integers(0, 4))) for _ in range(3)] for _ in range(4)]
    vals = [[r * 0.5 for r in rs] for rs in rews]
    got = search.pool_scores(rews, vals, how)
    want = np.asarray([search.solution_scores(r, how, empty_value=0.0, step_values=q) for r, q in zip(rews, vals)])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_search_command_reads_math_gsm8k_and_prompt_files(tmp_path):
    """`prm-jax search --problems`: MATH500 / GSM8K files by their fields, gold answers as the
    readers parse them; a file without a problem field is a one-line error naming it."""
    import os

    from prm_jax.commands.search import _read_problems

    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    fmt, rows = _read_problems(os.path.join(fx, "gsm8k.jsonl"), "auto")
    assert fmt == "gsm8k" and len(rows) == 3 and rows[0][1] == "18"  # Janet's ducks: #### 18
    fmt, rows = _read_problems(os.path.join(fx, "math500.jsonl"), "auto")
    assert fmt == "math" and rows[0][0].startswith("Convert the point $(0,3)$")
    assert rows[0][1] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "1 + 1?", "answer": 2}\n')
    assert _read_problems(str(p), "auto") == ("prompt", [("1 + 1?", "2")])
    p.write_text('{"text": "1 + 1?"}\n')
    with pytest.raises(ValueError, match="p.jsonl:1: no `problem`, `question` or `prompt` field"):
        _read_problems(str(p), "auto")


def test_search_command_answer_kind_reaches_the_policy_and_the_grade():
    """--arith grades integers whatever type the policy's parser returns, and names the kind the policy
    reads answers with ('arith'); --problems takes the format's kind unless --answer-kind says; an
    unknown kind is refused before any model loads."""
    import argparse
    import os

    from prm_jax.commands.search import _problems

    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    args = argparse.Namespace(limit=None, arith=3, problems=None, answer_kind=None, seed=0, format="auto")
    problems, gold, grade, kind = _problems(args)
    assert kind == "arith" and len(problems) == 3
    assert grade(str(gold[0]), gold[0]) and grade(gold[0], gold[0]) and not grade(None, gold[0])
    assert not grade(str(gold[0] + 1), gold[0])
    args = argparse.Namespace(
        limit=1, arith=None, problems=os.path.join(fx, "gsm8k.jsonl"), answer_kind=None, seed=0, format="auto"
    )
    assert _problems(args)[3] == "gsm8k"
    args.answer_kind = "math"
    assert _problems(args)[3] == "math"
    args.answer_kind = "latex"
    with pytest.raises(ValueError, match="--answer-kind 'latex'"):
        _problems(args)


class RandomPolicy:
    """Full solutions of 1-3 random digit steps (seeded per call); the answer is the last digit mod 3."""

    class sampler:
        tokens_per_second = 0.0

    def continue_from(self, problems, prefixes, rng, *, mode, temperature=1.0, top_p=1.0, max_new_tokens=64, desc=None):
        g = np.random.default_rng(int(jax.random.randint(rng, (), 0, 2**30)))
        out = []
        for _ in problems:
            k = int(g.integers(0, 4))  # 0 steps: a solution that never ended, with no answer
            out.append(Continuation([str(d) for d in g.integers(0, 10, k)], k > 0, 2 * k + 1))
        return out

    def answer(self, steps):
        return int(steps[-1]) % 3 if steps else None


class ScoreAllVerifier(DigitVerifier):
    kind = "score"

    def score_all(self, problems, steps_list):
        s = self.step_scores(problems, steps_list)
        return {"rewards": s, "values": s, "probs": s}


def test_evaluate_methods_per_problem_picks_are_the_curves_at_full_n_and_match_brute_force():
    """Each per-problem pick is what the curve's value at N = n averages (every draw is the whole
    pool there), and agrees with brute force: majority = the most frequent answer (first seen on
    ties), oracle = any sample right, argmax of min = the first sample with the highest min score."""
    gold = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    problems = [f"p{i}" for i in range(len(gold))]
    res = search.evaluate_methods(
        RandomPolicy(),
        {"verifier": ScoreAllVerifier()},
        problems,
        gold,
        jax.random.PRNGKey(3),
        n=8,
        n_boot=20,
        per_problem=True,
    )
    rows = res["per_problem"]
    assert [r["gold"] for r in rows] == gold and all(len(r["samples"]) == 8 for r in rows)
    for label, c in res["curves"].items():
        assert np.mean([r["picks"][label]["correct"] for r in rows]) == pytest.approx(c["acc"][-1], abs=1e-12), label
        # the per-problem accuracies the report's paired differences read: each N's mean is the curve,
        # and at N = n each problem's is its pick's correctness
        per = np.asarray(res["per_problem_acc"][label])
        assert per.shape == (len(c["ns"]), len(problems)), label
        np.testing.assert_allclose(per.mean(1), c["acc"], atol=1e-6, err_msg=label)
        assert per[-1].tolist() == [float(r["picks"][label]["correct"]) for r in rows], label
    assert res["bootstrap"] == {"n_boot": 20, "seed": 0}
    for r in rows:
        answers = [s["answer"] for s in r["samples"]]
        seen = [a for a in answers if a is not None]
        if seen:
            top = max(collections.Counter(seen).values())
            want = next(a for a in seen if seen.count(a) == top)
            assert r["picks"]["majority"]["answer"] == want
        assert r["picks"]["oracle"]["correct"] == any(s["correct"] for s in r["samples"])
        mins = [s["scores"]["verifier/min"] if s["answer"] is not None else -np.inf for s in r["samples"]]
        j = r["picks"]["verifier/min/argmax"]["sample"]
        assert j == (int(np.argmax(mins)) if seen else -1)
    # the brute-force checks above were not vacuous
    assert 0 < np.mean([r["picks"]["majority"]["correct"] for r in rows]) < 1
