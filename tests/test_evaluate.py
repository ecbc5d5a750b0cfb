"""prm_jax.evaluate and prm_jax.plots: ProcessBench F1, thresholds, best-of-N curves, AUROC, grading."""

import itertools
import json
import os
import threading

import numpy as np
import pytest

from prm_jax import evaluate, plots


def test_processbench_metrics_hand_computed():
    label = [-1, -1, -1, -1, 2, 0, 1, 3]
    pred = [-1, -1, 0, -1, 2, 1, 1, -1]
    m = evaluate.processbench_metrics(pred, label)
    # correct cases: 3 of 4 predicted -1; erroneous: 2 of 4 exact
    assert m["acc_correct"] == pytest.approx(0.75)
    assert m["acc_erroneous"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    assert (m["n"], m["n_erroneous"], m["n_correct"]) == (8, 4, 4)
    s = evaluate.processbench_summary({"a": (pred, label), "b": ([-1, 0], [-1, 0])})
    assert s["b"]["f1"] == 1.0
    assert s["average"]["f1"] == pytest.approx((0.6 + 1.0) / 2)
    with pytest.raises(ValueError):
        evaluate.processbench_metrics([1, 2], [1])
    with pytest.raises(ValueError):
        evaluate.processbench_metrics([-2], [1])


def _brute_best_f1(probs, labels, grid):
    best = -1.0
    for x in grid:
        pred = [next((i for i, p in enumerate(ps) if p < x), -1) for ps in probs]
        best = max(best, evaluate.processbench_metrics(pred, labels)["f1"])
    return best


def test_best_threshold_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(5):
        probs = [np.round(rng.random(rng.integers(1, 6)), 2) for _ in range(30)]
        labels = [int(rng.integers(-1, len(p))) for p in probs]
        thr = evaluate.best_threshold(probs, labels)
        got = evaluate.processbench_metrics(evaluate.predict_first_error(probs, thr), labels)["f1"]
        grid = np.linspace(-0.01, 1.01, 2041)  # resolution 5e-4 < the 0.01 spacing of the values
        assert got == pytest.approx(_brute_best_f1(probs, labels, grid)), trial


def test_best_threshold_hand_example_and_errors():
    # solution 0 wrong at step 1 (probs 0.9, 0.2), solution 1 all correct (0.8, 0.7)
    thr = evaluate.best_threshold([[0.9, 0.2], [0.8, 0.7]], [1, -1])
    assert 0.2 < thr <= 0.7
    assert evaluate.predict_first_error([[0.9, 0.2], [0.8, 0.7]], thr).tolist() == [1, -1]
    with pytest.raises(ValueError, match="outside"):
        evaluate.best_threshold([[0.9]], [3])
    with pytest.raises(ValueError, match="labels"):
        evaluate.best_threshold([[0.9]], [0, -1])


def _np_pick(method, s, c, a):
    """Brute-force selection: None answers never win; every tie goes to the first candidate."""
    cand = [j for j in range(len(a)) if a[j] is not None]
    if not cand:
        return False
    if method == "argmax":
        best = max(s[j] for j in cand)
        return c[next(j for j in cand if s[j] == best)]
    tot = {}
    for j in cand:
        tot[a[j]] = tot.get(a[j], 0.0) + (1.0 if method == "majority" else s[j])
    best = max(tot.values())
    win = next(a[j] for j in cand if tot[a[j]] == best)
    return c[next(j for j in cand if a[j] == win)]


@pytest.mark.parametrize("method", evaluate.BEST_OF_N_METHODS)
def test_best_of_n_curve_matches_exact_expectation(method):
    """Small pool: the exact expected accuracy over all N-subsets lies in the bootstrap estimate."""
    rng = np.random.default_rng(1)
    P, M = 6, 6
    scores = rng.random((P, M))
    answers = rng.integers(0, 3, size=(P, M))
    correct = answers == 0
    curve = evaluate.best_of_n_curve(
        scores, correct, answers.tolist(), ns=[1, 2, 4], method=method, n_boot=3000, seed=0
    )
    assert curve.ns.tolist() == [1, 2, 4]
    for i, n in enumerate([1, 2, 4]):
        exact = np.mean(
            [
                np.mean(
                    [
                        _np_pick(method, scores[p, list(sub)], correct[p, list(sub)], answers[p, list(sub)])
                        for sub in itertools.combinations(range(M), n)
                    ]
                )
                for p in range(P)
            ]
        )
        assert curve.acc[i] == pytest.approx(exact, abs=0.015), (method, n)
        assert curve.lo[i] <= curve.acc[i] <= curve.hi[i]
        # each problem's own expectation, what paired comparisons read
        per = curve.per_problem[i]
        assert per.shape == (P,) and per.mean() == pytest.approx(curve.acc[i], abs=1e-12)
    # N = M is deterministic for argmax and its value is known, problem by problem
    full = evaluate.best_of_n_curve(scores, correct, answers.tolist(), ns=[M], method="argmax", n_boot=10)
    assert full.acc[0] == pytest.approx(np.mean(correct[np.arange(P), scores.argmax(1)]))
    np.testing.assert_array_equal(full.per_problem[0], correct[np.arange(P), scores.argmax(1)])


def test_paired_difference_matches_the_enumerated_bootstrap():
    """Five problems: all 5^5 equally likely resamples enumerated give the exact bootstrap distribution
    of the mean difference; 40,000 replicates must land on its 2.5% and 97.5% quantiles."""
    a, b = np.array([1.0, 0.0, 1.0, 0.5, 1.0]), np.array([0.0, 0.0, 0.0, 1.0, 0.5])
    d = a - b
    values, counts = np.unique([d[list(j)].mean() for j in itertools.product(range(5), repeat=5)], return_counts=True)
    cdf = np.cumsum(counts) / counts.sum()

    def quantile(q):  # the smallest value whose CDF reaches q; the CDF must not pass q close to it
        i = np.searchsorted(cdf, q)
        assert cdf[i] - q > 0.005 and (i == 0 or q - cdf[i - 1] > 0.005)
        return values[i]

    mean, lo, hi = evaluate.paired_difference(a, b, n_boot=40_000, seed=3)
    assert mean == pytest.approx(0.4)
    assert lo == pytest.approx(quantile(0.025), abs=1e-12) and hi == pytest.approx(quantile(0.975), abs=1e-12)
    assert values[0] < lo < mean < hi < values[-1]  # interior quantiles, not the extremes
    assert evaluate.paired_difference(a, b, n_boot=50, seed=3) == evaluate.paired_difference(a, b, n_boot=50, seed=3)


def test_paired_difference_cancels_what_the_methods_share():
    """Two methods that agree on all but 4 of 400 problems: the paired interval is [0, 0.02]-ish, far
    narrower than either accuracy's own interval (about +-0.05); identical methods give exactly 0."""
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    flip = np.flatnonzero(a == 0)[:4]
    a[flip] = 1.0  # a wins on 4 problems, loses on none
    mean, lo, hi = evaluate.paired_difference(a, b, n_boot=2000, seed=0)
    assert mean == pytest.approx(4 / 400) and lo >= 0.0 and hi <= 0.025 and lo < mean < hi
    own = evaluate.best_of_n_curve(a[:, None], a[:, None].astype(bool), ns=[1], n_boot=2000, seed=0)
    assert own.hi[0] - own.lo[0] > 4 * (hi - lo)
    assert evaluate.paired_difference(a, a, n_boot=100, seed=0) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "a, b, kw, match",
    [
        ([1.0, 0.0], [1.0], {}, "one length"),
        ([], [], {}, "non-empty"),
        ([[1.0]], [[1.0]], {}, "1-d"),
        ([1.0, np.nan], [1.0, 0.0], {}, "NaN"),
        ([1.0], [0.0], {"n_boot": 0}, "n_boot"),
        ([1.0], [0.0], {"ci": 1.0}, "ci"),
    ],
)
def test_paired_difference_rejects_bad_input(a, b, kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate.paired_difference(a, b, **{"n_boot": 10, "seed": 0, **kw})


def test_best_of_n_curve_defaults_and_errors():
    correct = np.array([[1, 0, 0, 0, 0, 0, 0, 0]] * 3, bool)
    answers = [["a"] + ["b"] * 7] * 3
    c = evaluate.best_of_n_curve(None, correct, answers, method="majority", n_boot=50)
    assert c.ns.tolist() == [1, 2, 4, 8]
    assert c.acc[-1] == 0.0 and c.acc[0] == pytest.approx(1 / 8, abs=0.06)
    with pytest.raises(ValueError, match="method"):
        evaluate.best_of_n_curve(None, correct, answers, method="oracle")
    with pytest.raises(ValueError, match="answers"):
        evaluate.best_of_n_curve(np.zeros((3, 8)), correct, None, method="weighted_vote")
    with pytest.raises(ValueError, match="N must be"):
        evaluate.best_of_n_curve(np.zeros((3, 8)), correct, ns=[16])
    # None answers never win (they neither pool together nor count as an answer of their own)
    ans = [[None, None, "x"]]
    c = evaluate.best_of_n_curve(None, np.array([[0, 0, 1]], bool), ans, ns=[3], method="majority", n_boot=300)
    assert c.acc[0] == 1.0


def test_step_auroc_hand_computed_with_ties():
    scores = [0.1, 0.4, 0.4, 0.8, 0.4, 0.9]
    labels = [0, 0, 1, 1, 1, 0]
    # positives {0.4, 0.8, 0.4} vs negatives {0.1, 0.4, 0.9}: pairs won 1+.5+0 + 1+1+0 + 1+.5+0 = 5 of 9
    assert evaluate.step_auroc(scores, labels) == pytest.approx(5 / 9)
    mask = [1, 1, 1, 1, 1, 0]
    # without the 0.9 negative: 1.5 + 2 + 1.5 = 5 of 6
    assert evaluate.step_auroc(scores, labels, mask) == pytest.approx(5 / 6)
    assert np.isnan(evaluate.step_auroc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(2)
    s, y = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert evaluate.step_auroc(s, y) == pytest.approx(brute)
    with pytest.raises(ValueError):
        evaluate.step_auroc([np.nan, 1.0], [0, 1])


def test_oracle_curve_is_pass_at_n():
    """argmax on scores = correctness (the report's oracle row) is pass@N = 1 - C(M-c, N) / C(M, N)."""
    from math import comb

    rng = np.random.default_rng(3)
    correct = rng.random((8, 8)) < 0.3
    c = evaluate.best_of_n_curve(correct.astype(float), correct, ns=[1, 2, 4, 8], n_boot=3000, seed=0)
    for i, n in enumerate([1, 2, 4, 8]):
        exact = np.mean([1.0 - comb(8 - int(k), n) / comb(8, n) for k in correct.sum(1)])
        assert c.acc[i] == pytest.approx(exact, abs=0.015), n


def test_step_auroc_ci_resamples_solutions():
    rng = np.random.default_rng(4)
    truth = [rng.random(int(rng.integers(1, 5))) < 0.5 for _ in range(60)]
    scores = [t + rng.normal(0, 0.8, t.shape) for t in truth]
    a, lo, hi = evaluate.step_auroc_ci(scores, truth, n_boot=400, seed=0)
    assert a == pytest.approx(evaluate.step_auroc(np.concatenate(scores), np.concatenate(truth)))
    assert 0.5 < lo < a < hi < 1.0
    # a brute-force bootstrap over solutions (its own loop) gives the same interval width to sampling noise
    reps = []
    r2 = np.random.default_rng(99)
    for _ in range(400):
        j = r2.integers(0, 60, 60)
        s, t = np.concatenate([scores[i] for i in j]), np.concatenate([truth[i] for i in j])
        pos, neg = s[t], s[~t]
        reps.append(np.mean(pos[:, None] > neg[None, :]))
    blo, bhi = np.quantile(reps, [0.025, 0.975])
    assert hi - lo == pytest.approx(bhi - blo, rel=0.35)
    # perfectly separated steps: a degenerate interval at 1; one class only: undefined
    assert evaluate.step_auroc_ci([[0.9, 0.1], [0.8]], [[1, 0], [1]], n_boot=50, seed=0)[0] == 1.0
    assert all(np.isnan(x) for x in evaluate.step_auroc_ci([[0.9], [0.8]], [[1], [1]], n_boot=50, seed=0))
    with pytest.raises(ValueError, match="same length"):
        evaluate.step_auroc_ci([[0.9, 0.1]], [[1]], n_boot=5, seed=0)


@pytest.mark.parametrize(
    "text,kind,want",
    [
        ("so x = \\boxed{\\frac{1}{2}} and \\boxed{3}.", "math", "3"),
        ("\\boxed{\\frac{a}{b^{2}}}", "math", "\\frac{a}{b^{2}}"),
        ("no box here 12", "math", None),
        ("She pays 3 + 4 = 7 dollars.\n#### 1,234", "gsm8k", "1234"),
        ("The answer is 42.", "gsm8k", "42"),
        ("a = 3 + 4 = 7\nb = 7 * -2 = -14", "arith", "-14"),
        ("nothing", "arith", None),
    ],
)
def test_extract_answer(text, kind, want):
    assert evaluate.extract_answer(text, kind) == want


def test_grade_answer():
    assert evaluate.grade_answer("-14", "-14", "arith")
    assert not evaluate.grade_answer("14", "-14", "arith")
    assert not evaluate.grade_answer("1.0", "1", "arith")
    assert evaluate.grade_answer("0.5", "\\frac{1}{2}", "math")
    assert evaluate.grade_answer("\\frac12", "\\dfrac{1}{2}", "math")
    assert not evaluate.grade_answer("\\frac13", "\\frac{1}{2}", "math")
    assert evaluate.grade_answer("1234.0", "1234", "gsm8k")
    assert not evaluate.grade_answer(None, "3", "gsm8k")
    with pytest.raises(ValueError):
        evaluate.grade_answer("1", "1", "physics")
    # off the main thread (no SIGALRM) grading still works
    out = []
    th = threading.Thread(target=lambda: out.append(evaluate.grade_answer("2/4", "\\frac{1}{2}", "math")))
    th.start()
    th.join()
    assert out == [True]


def test_plots_write_pngs(tmp_path):
    c1 = evaluate.Curve(
        np.array([1, 2, 4, 8]),
        np.array([0.3, 0.4, 0.5, 0.55]),
        np.array([0.25, 0.35, 0.45, 0.5]),
        np.array([0.35, 0.45, 0.55, 0.6]),
    )
    p = plots.plot_accuracy_vs_n(
        {"PRM best-of-N": c1, "majority": (c1.ns, c1.acc - 0.1, c1.lo - 0.1, c1.hi - 0.1)}, str(tmp_path / "acc.png")
    )
    p2 = plots.plot_step_scores(
        ["a = 3 + 4 = 7", "b = 7 * 2 = 15", "answer 15"],
        [0.9, 0.2, 0.1],
        [1, 0, None],
        str(tmp_path / "sub" / "steps.png"),
    )
    for f in (p, p2):
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plots.plot_step_scores(["a"], [0.1, 0.2], None, str(tmp_path / "x.png"))
    with pytest.raises(ValueError):
        plots.plot_accuracy_vs_n({}, str(tmp_path / "y.png"))
    # a one-point method at a non-power-of-two N (a search at its token budget), and the compute plot
    p3 = plots.plot_accuracy_vs_n(
        {"bce/min/argmax": c1, "beam_bce": ([9.5], [0.6], [0.5], [0.7])}, str(tmp_path / "b.png")
    )
    p4 = plots.plot_accuracy_vs_compute({"bce/min/argmax": (c1.ns * 80.0, *c1[1:])}, str(tmp_path / "c.png"))
    assert all(open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in (p3, p4))
    # one colour per verifier across figures, a beam search in its ranker's
    assert plots._family_style("bce") == plots._family_style("bce") != plots._family_style("pav")


def test_searches_at_the_same_budget_are_drawn_apart():
    """Two beam searches at the same N: their markers sit 3 dodges (9% of an octave) apart, where one
    dodge (2%) left the first hidden under the second's marker and error bar."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    one = ([16], [0.6], [0.5], [0.7])
    plots._draw(ax, {"beam_bce": one, "beam_pav": one}, None, 0.03)
    xs = sorted(float(c.lines[0].get_xdata()[0]) for c in ax.containers)
    plt.close(fig)
    assert len(xs) == 2 and xs[1] / xs[0] == pytest.approx(2.0**0.09)


def test_report_places_each_method_at_its_measured_compute():
    """plot_curves: a search at the N of best-of-N with its generated tokens, and every method at its
    generated + verifier tokens per problem (hand-computed from the token counts)."""
    from prm_jax import report

    ns = [1, 2, 4]
    curve = {"ns": ns, "acc": [0.1, 0.2, 0.3], "lo": [0.0] * 3, "hi": [0.5] * 3}
    one = {"ns": [4], "acc": [0.4], "lo": [0.3], "hi": [0.5]}
    curves = {k: curve for k in report.MAIN if not k.startswith("beam")}
    curves.update(beam_bce=one, beam_pav=one)
    tokens = {f"verifier_{v}_per_problem": 400.0 for v in ("bce", "exact", "orm", "pav", "likelihood")}
    tokens["verifier_implicit_per_problem"] = 800.0  # policy + reference forward
    tokens.update(beam_bce_gen_per_problem=250.0, beam_bce_verifier_per_problem=500.0)
    tokens.update(beam_pav_gen_per_problem=300.0, beam_pav_verifier_per_problem=900.0)
    res = {"mean_gen_tokens_per_solution": 50.0, "n": 4, "tokens": tokens, "curves": curves}
    by_n, by_tokens = report.plot_curves(res)
    assert by_n["beam_bce"][0] == [5.0] and by_n["beam_pav"][0] == [6.0]  # 250 / 50, 300 / 50
    assert by_n["bce/min/argmax"][0] == ns and "oracle" in by_n and "oracle" not in by_tokens
    assert by_tokens["majority"][0] == [50.0, 100.0, 200.0]
    assert by_tokens["bce/min/argmax"][0] == [150.0, 300.0, 600.0]  # (50 + 400 / 4) * N
    assert by_tokens["implicit/min/argmax"][0] == [250.0, 500.0, 1000.0]
    assert by_tokens["beam_pav"][0] == [1200.0] and by_tokens["beam_pav"][1] == [0.4]


# ------------------------------------------------------------------ `prm-jax evaluate processbench`


def _byte_tokenizer(folder):
    """A byte-level tokenizer built locally (no hub): every byte one token, plus pad and eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({"<pad>": len(vocab), "<eos>": len(vocab) + 1})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(str(folder))
    return len(vocab)


def _tiny_model(vocab_size):
    import jax

    from prm_jax import model

    cfg = model.ModelConfig.preset(
        "tiny", vocab_size=vocab_size, d_model=32, n_heads=2, n_kv_heads=1, mlp_dim=64, max_seq_len=256
    )
    rng = np.random.default_rng(0)

    # random weights straight from the abstract shapes (no init compile): norm scales 1, the rest
    # N(0, 0.1^2), the score head wider so that step probabilities spread around 0.5
    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            return np.ones(leaf.shape, leaf.dtype)
        std = 1.0 if "score_head" in name else 0.1
        return (rng.standard_normal(leaf.shape) * std).astype(leaf.dtype)

    return cfg, jax.tree_util.tree_map_with_path(fill, model.abstract_params(cfg))


def _write_split(path, n_cases, rng):
    items = []
    for i in range(n_cases):
        steps = [
            f"step {j}: {int(rng.integers(0, 99))} + {int(rng.integers(0, 99))}" for j in range(int(rng.integers(1, 5)))
        ]
        label = -1 if i == 0 else (0 if i == 1 else int(rng.integers(-1, len(steps))))
        items.append(
            {
                "id": f"tiny-{i}",
                "generator": "test",
                "problem": f"problem {i}?",
                "steps": steps,
                "final_answer_correct": label == -1,
                "label": label,
            }
        )
    with open(path, "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "processbench_gsm8k.json")


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    """(folder with the tokenizer, HFTokenizer, model cfg, params): built once, shared by the tests below."""
    from prm_jax.data.tokenizers import HFTokenizer

    folder = tmp_path_factory.mktemp("tiny_prm")
    vocab = _byte_tokenizer(folder)
    cfg, params = _tiny_model(vocab)
    return folder, HFTokenizer(str(folder)), cfg, params


def test_score_step_probs_match_unpadded_forward(tmp_path, tiny_prm):
    import jax

    from prm_jax import model
    from prm_jax.verifier import Verifier, score_step_probs
    from prm_jax.data import readers, tokenize
    from prm_jax.data.records import Record

    _, tok, cfg, params = tiny_prm
    _write_split(tmp_path / "s.jsonl", 5, np.random.default_rng(0))
    long = Record("a long one?", [f"step {j}: {j} + {j} = {2 * j}" for j in range(12)], [1.0] * 12)
    records = readers.read_all("processbench", str(tmp_path / "s.jsonl")) + [long]
    ver = Verifier("score", cfg, params, tok, marker="\n\n", max_batch=4, max_len=128)
    probs, truncated = score_step_probs(ver, records, batch_size=4, progress=False)
    assert truncated == 1 and 0 < len(probs[-1]) < 12  # the long record loses its trailing steps

    # reference: each example alone, right-padded without segment ids (causal: padding after a
    # token cannot change its output), one compiled shape
    @jax.jit
    def scores(tokens_1xL):
        return model.forward(cfg, params, tokens_1xL).score

    for r, p in zip(records, probs):
        ex = tokenize.encode_example(r, tok, marker="\n\n", max_len=128, max_steps=len(r.steps))
        tokens = np.full((1, 128), tok.pad_id, np.int32)
        tokens[0, : len(ex["tokens"])] = ex["tokens"]
        ref = 1 / (1 + np.exp(-np.asarray(scores(tokens)[0], np.float64)[ex["step_pos"]]))
        assert p.shape == ref.shape and 0 < len(p) <= len(r.steps)
        np.testing.assert_allclose(p, ref, atol=2e-5)
    assert np.concatenate(probs).std() > 0.01


def _fake_hf(cfg, params):
    import types

    return types.SimpleNamespace(load_checkpoint=lambda path: (cfg, params))


def test_evaluate_processbench_command_end_to_end(tmp_path, monkeypatch, capsys, tiny_prm):
    import shutil

    from prm_jax import cli

    folder, _, cfg, params = tiny_prm
    shutil.copytree(folder, tmp_path / "ckpt")
    try:
        from prm_jax import hf  # the model engineer's module: the real save / load round trip

        hf.save_checkpoint(str(tmp_path / "ckpt"), cfg, params)
        assert (tmp_path / "ckpt" / "config.json").exists()
    except ImportError:
        monkeypatch.setitem(__import__("sys").modules, "prm_jax.hf", _fake_hf(cfg, params))
    _write_split(tmp_path / "tiny_a.jsonl", 12, np.random.default_rng(1))
    _write_split(tmp_path / "tiny_b.jsonl", 9, np.random.default_rng(2))
    out = tmp_path / "res" / "pb.json"
    base = [
        "evaluate",
        "processbench",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--data",
        str(tmp_path / "tiny_a.jsonl"),
        str(tmp_path / "tiny_b.jsonl"),
        FIXTURE,
        "--batch-size",
        "4",
        "--max-len",
        "128",
        "--output",
        str(out),
    ]
    assert cli.main(base + ["--pick-threshold-on", "tiny_a"]) == 0
    printed = capsys.readouterr().out
    assert "average" in printed and "tiny_b" in printed and "processbench_gsm8k" in printed
    res = json.loads(out.read_text())
    assert res["threshold_source"] == "best F1 on tiny_a"
    thr = res["threshold"]
    # every prediction follows from the saved step probabilities, and the metrics from the predictions
    f1s = []
    for split, cases in res["predictions"].items():
        pred = evaluate.predict_first_error([c["step_probs"] for c in cases], thr)
        assert pred.tolist() == [c["pred"] for c in cases]
        m = evaluate.processbench_metrics(pred, [c["label"] for c in cases])
        assert res["results"][split]["f1"] == pytest.approx(m["f1"])
        f1s.append(m["f1"])
    assert res["results"]["average"]["f1"] == pytest.approx(np.mean(f1s))
    assert res["results"]["processbench_gsm8k"]["truncated"] == 3  # prompts alone exceed 128 bytes
    # the picked threshold is the best one on its split
    cases = res["predictions"]["tiny_a"]
    best = evaluate.best_threshold([c["step_probs"] for c in cases], [c["label"] for c in cases])
    assert thr == pytest.approx(best, abs=1e-4)

    # threshold 0: nothing is flagged, so every correct case is right and every erroneous one wrong
    assert cli.main(base + ["--threshold", "0"]) == 0
    res = json.loads(out.read_text())
    for split in ("tiny_a", "tiny_b"):
        m = res["results"][split]
        assert (m["acc_correct"], m["acc_erroneous"], m["f1"]) == (1.0, 0.0, 0.0)

    # a split whose prompts alone exceed --max-len: nothing scored, every case predicted -1
    assert cli.main(base + ["--pick-threshold-on", "processbench_gsm8k"]) == 0
    res = json.loads(out.read_text())
    assert [c["pred"] for c in res["predictions"]["processbench_gsm8k"]] == [-1, -1, -1]
    assert cli.main(base + ["--pick-threshold-on", "olympiad"]) == 2  # one line: not one of the splits
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "problem": "p", "steps": ["a"], "final_answer_correct": true, "label": 5}\n')
    from prm_jax.data.records import DataError

    with pytest.raises(DataError, match="bad.jsonl:1"):  # --debug: the exception itself
        cli.main(
            [
                "evaluate",
                "processbench",
                "--checkpoint",
                str(tmp_path / "ckpt"),
                "--data",
                str(bad),
                "--output",
                str(out),
                "--debug",
            ]
        )
    capsys.readouterr()
    assert (
        cli.main(
            [
                "evaluate",
                "processbench",
                "--checkpoint",
                str(tmp_path / "ckpt"),
                "--data",
                str(bad),
                "--output",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "bad.jsonl:1: label out of range" in err[-1], err


def _ckpt(tmp_path, folder, cfg, params):
    import shutil

    from prm_jax import hf

    shutil.copytree(folder, tmp_path / "ckpt")
    hf.save_checkpoint(str(tmp_path / "ckpt"), cfg, params)
    return str(tmp_path / "ckpt")


def test_tokenizer_ids_beyond_the_vocabulary_are_an_error_not_nan(tmp_path, capsys, tiny_prm):
    """A checkpoint whose tokenizer emits ids >= vocab_size: before, every probability was NaN, every
    prediction -1 and the run exited 0; now one error naming the tokenizer, the id and the vocabulary."""
    from prm_jax import cli, sampling
    from prm_jax.verifier import Verifier

    folder, tok, cfg, params = tiny_prm
    small_cfg, small_params = _tiny_model(64)  # the byte tokenizer's ids go up to 257
    ckpt = _ckpt(tmp_path, folder, small_cfg, small_params)
    _write_split(tmp_path / "s.jsonl", 4, np.random.default_rng(3))
    rc = cli.main(
        [
            "evaluate",
            "processbench",
            "--checkpoint",
            ckpt,
            "--data",
            str(tmp_path / "s.jsonl"),
            "--output",
            str(tmp_path / "o.json"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and not (tmp_path / "o.json").exists()
    assert err.startswith("error: token id ") and "vocabulary of size 64" in err and "tokenizer" in err, err
    with pytest.raises(ValueError, match="outside the model vocabulary of size 64"):
        Verifier("score", small_cfg, small_params, tok, marker="\n\n").step_scores(["p?"], [["zz"]])
    smp = sampling.Sampler(small_cfg, small_params, pad_id=0, eos_id=1, step_id=None, max_batch=16)
    with pytest.raises(ValueError, match="token id 200 from the sampler's prefixes"):
        smp.sample([[3, 200]], jax_key(), max_new_tokens=4)
    with pytest.raises(ValueError, match="NaN"):
        evaluate.predict_first_error([np.asarray([0.9, np.nan])], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        evaluate.best_threshold([np.asarray([np.nan])], [0])


def jax_key():
    import jax

    return jax.random.PRNGKey(0)


def test_outputs_are_strict_json_and_limit_is_stratified(tmp_path, capsys, tiny_prm):
    """`--limit` on a file listing its erroneous cases first (as each real split does) keeps both kinds
    (before: only erroneous, F1 = 0, and a bare NaN in the output JSON)."""
    from prm_jax import cli

    folder, _, cfg, params = tiny_prm
    ckpt = _ckpt(tmp_path, folder, cfg, params)
    cases = [
        {"id": f"e{i}", "problem": f"p{i}?", "steps": ["a", "b"], "final_answer_correct": False, "label": 1}
        for i in range(8)
    ] + [
        {"id": f"c{i}", "problem": f"q{i}?", "steps": ["a"], "final_answer_correct": True, "label": -1}
        for i in range(4)
    ]
    (tmp_path / "split.json").write_text(json.dumps(cases))
    out = tmp_path / "o.json"
    assert (
        cli.main(
            [
                "evaluate",
                "processbench",
                "--checkpoint",
                ckpt,
                "--data",
                str(tmp_path / "split.json"),
                "--limit",
                "6",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()

    def no_constants(c):
        raise ValueError(f"non-standard JSON constant {c}")

    res = json.loads(text, parse_constant=no_constants)  # strict: NaN / Infinity rejected
    m = res["results"]["split"]
    assert m["n"] == 6 and m["n_erroneous"] == 4 and m["n_correct"] == 2 and "stratified" in res["subset"]
    # a split of erroneous cases only has acc_correct undefined: null, not NaN
    (tmp_path / "err.json").write_text(json.dumps(cases[:3]))
    assert (
        cli.main(
            [
                "evaluate",
                "processbench",
                "--checkpoint",
                ckpt,
                "--data",
                str(tmp_path / "err.json"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text(), parse_constant=no_constants)
    assert res["results"]["err"]["acc_correct"] is None
    sub = evaluate.processbench_subset(
        __import__("prm_jax.data.readers", fromlist=["x"]).read_all("processbench", str(tmp_path / "split.json")),
        6,
        seed=0,
    )
    assert [r.first_error() == -1 for r in sub].count(True) == 2


def test_user_errors_are_one_line_messages(tmp_path, capsys, tiny_prm):
    from prm_jax import cli

    folder, _, cfg, params = tiny_prm
    _write_split(tmp_path / "s.jsonl", 3, np.random.default_rng(4))
    for args, where in [
        (["--checkpoint", str(tmp_path / "missing"), "--data", str(tmp_path / "s.jsonl")], "missing"),
        (["--checkpoint", _ckpt(tmp_path, folder, cfg, params), "--data", str(tmp_path / "nope.json")], "nope.json"),
    ]:
        rc = cli.main(["evaluate", "processbench", *args, "--output", str(tmp_path / "o.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and where in err[0], err
        assert "Traceback" not in err[0]
