"""The main job: policy SFT -> MC step labels and PAV targets -> four verifiers -> search -> report.md.

Stages (each skipped when its output exists, so an interrupted run resumes):
  1. policy/     SFT of a tiny policy on gold + corrupted arithmetic solutions (it learns to err);
  2. labels/     solutions sampled from the policy, Math-Shepherd MC labels (K rollouts per step),
                 OmegaPRM binary search (rollouts counted against full MC), PAV targets (Best-of-K
                 prover), exact step correctness in `meta`: one step-wise jsonl;
  3. bce/ qpi/ orm/ pav/ implicit/   the verifiers, trained by `prm_jax.loop.run` from that jsonl:
                 BCE-PRM on hard MC labels, Q^pi on soft MC labels (the policy's own success
                 probability, PAV search's Q term), ORM, PAV (the Best-of-K prover's Q^mu), implicit;
  4. eval.json   held-out problems: N samples each, scored by every verifier; majority vote,
                 best-of-N (aggregations x argmax / weighted vote), beam search with the BCE-PRM,
                 PAV beam search (rank by Q^pi + alpha * A^mu, answer by Q^pi); step AUROC against
                 exact ground truth; token counts;
  5. report.md, accuracy_vs_n.png, solution_steps.png; the table is printed.
"""

from __future__ import annotations

import copy
import json
import os
import time

import jax
import numpy as np

from prm_jax import evaluate, jsonio, labeling, loop, sampling, search
from prm_jax.data import arith
from prm_jax.data.arith import CharTokenizer
from prm_jax.verifier import Verifier

MARKER = CharTokenizer.STEP
# Aggregations per verifier kind: probabilities (score heads) take PURE's min-form too; an implicit
# PRM's signed step rewards r_t take min / mean, and `last` reads its q_T.
AGGS = {"score": ("min", "last", "prod", "mean", "pure"), "implicit": ("min", "last", "mean")}
VOTE_AGGS = ("min", "last", "prod", "mean")  # aggregations whose score is a probability (or is mapped)
VERIFIERS = ("bce", "qpi", "orm", "pav", "implicit")
OBJECTIVE = {"bce": "bce", "qpi": "bce", "orm": "orm", "pav": "pav", "implicit": "implicit_ce"}
WEAK_POLICY = 0.10  # below this one-sample accuracy the report says the figures are not evidence

SETTINGS = {
    # policy_steps/policy_batch: SFT; label_problems x label_samples: labelled solutions (val_frac of
    # the problems held out for validation); k: MC rollouts per step prefix; verifier_passes: epochs
    # over the labelled training solutions; eval_*: held-out problems; sample_batch: sampler rows per
    # decode step (on a CPU a wide batch costs little more per step than a narrow one for a tiny model);
    # bce_labels: the BCE-PRM's target, "hard" (MC > 0, Math-Shepherd's default) or "soft" (the MC fraction).
    "full": dict(
        policy_steps=700,
        policy_batch=32,
        verifier_passes=3.0,
        batch_size=32,
        label_problems=256,
        label_samples=4,
        val_frac=0.125,
        k=4,
        eval_problems=64,
        n=16,
        beam_width=4,
        alpha=0.5,
        prover="bok:4",
        sample_batch=256,
        omega_solutions=96,
        bce_labels="hard",
    ),
    # Plumbing check (what the test runs): every stage and figure, numbers not meaningful.
    "quick": dict(
        policy_steps=40,
        policy_batch=16,
        verifier_passes=1.0,
        batch_size=16,
        label_problems=8,
        label_samples=2,
        val_frac=0.25,
        k=2,
        eval_problems=6,
        n=4,
        beam_width=2,
        alpha=0.5,
        prover="bok:4",
        sample_batch=64,
        omega_solutions=8,
        bce_labels="hard",
    ),
}
# Arithmetic task of the demo: short chains of one-digit additions and subtractions. The tiny policy
# learns to look values up by name only after ~500 SFT steps at batch 32 (in a 1,500-step cosine run
# the loss fell from ~0.3 to ~0.05 per token between steps 450 and 800; at batch 16 it had not
# started after 1,000 steps).
# The demo stops it inside that transition, where it is right on some problems and wrong on others,
# so verifiers have something to choose from (700 steps: one sample right 25-35% of the time).
# `self_sub=False` (no `d = c - c`) gives cleaner MC labels (BCE-PRM step AUROC 0.76 instead of 0.70)
# but moves the transition later: the policy was right 9% of the time after 700 steps, 12% after 800.
ARITH = dict(min_given=2, max_given=3, min_steps=2, max_steps=3, max_operand=9, max_result=99, operators=("+", "-"))
SFT_CORRUPT = 0.1  # share of corrupted SFT solutions: the policy also imitates some planted errors


def _base_config(objective: str, s: dict, workdir_policy: str | None, verifier_steps: int = 0):
    """Returns the experiments/arith_prm.py tiny config adapted to the demo's data and budget."""
    from prm_jax.config import load_config

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c = load_config(os.path.join(here, "experiments", f"arith_prm.py:{objective},tiny"))
    c.train.steps = s["policy_steps"] if objective == "sft" else verifier_steps
    c.train.batch_size = s["policy_batch"] if objective == "sft" else s["batch_size"]
    c.train.seq_len = 144  # the longest 3-step solution with its prompt is 136 tokens: none truncated
    c.train.ckpt_every = c.train.steps
    c.train.log_every = 10
    c.train.eval_every = 0
    c.data.add_eos = True
    c.data.arith.update(ARITH)
    if objective == "sft":
        c.data.arith.corrupt_prob = SFT_CORRUPT
        # A constant rate: under a cosine decay over 800 steps the look-up transition comes too late.
        c.optim.decay = "constant"
    else:
        c.init.workdir = workdir_policy  # verifiers start from the policy's weights
    if objective == "implicit_ce":
        c.init.ref_workdir = workdir_policy
        c.loss.beta = 0.05
    return c


def _grade(problem, steps) -> bool:
    return arith.is_correct(problem, steps)


def _problems(seed: int, n: int) -> list[str]:
    cfg = arith.ArithConfig.from_dict(ARITH)
    rng = np.random.default_rng(seed)
    return [arith.sample_problem(cfg, rng).text for _ in range(n)]


def _policy(workdir: str, max_batch: int):
    tok = CharTokenizer()
    cfg, params, _ = loop.load_trained(workdir)
    smp = sampling.Sampler(cfg, params, pad_id=tok.pad_id, eos_id=tok.eos_id, step_id=tok.step_id, max_batch=max_batch)
    return sampling.Policy(smp, tok, marker=MARKER, answer_fn=arith.final_answer)


def _done(path: str) -> bool:
    return os.path.exists(path)


def stage_policy(workdir: str, s: dict, log) -> None:
    out = os.path.join(workdir, "policy")
    if _done(os.path.join(out, "DONE")):
        log("policy: exists, skipped")
        return
    m = loop.run(_base_config("sft", s, None), out)
    open(os.path.join(out, "DONE"), "w").write(json.dumps({"loss": m.get("loss")}))
    log(f"policy: SFT done, final loss {m.get('loss'):.4f}")


def stage_labels(workdir: str, s: dict, log) -> dict:
    path = os.path.join(workdir, "labels", "train.jsonl")
    stats_path = os.path.join(workdir, "labels", "stats.json")
    if _done(stats_path):
        log("labels: exist, skipped")
        return json.load(open(stats_path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pol = _policy(os.path.join(workdir, "policy"), s["sample_batch"])
    rng = jax.random.PRNGKey(1)
    problems = _problems(1, s["label_problems"])
    sols = search.sample_solutions(pol, problems, s["label_samples"], jax.random.fold_in(rng, 0))
    items = [
        (p, x.steps, bool(x.complete and _grade(p, x.steps))) for p, xs in zip(problems, sols) for x in xs if x.steps
    ]
    t0 = time.perf_counter()
    labelled, stats = labeling.label_solutions(
        pol,
        _grade,
        items,
        jax.random.fold_in(rng, 1),
        k=s["k"],
        prover=s["prover"],
        max_new_tokens=128,
        step_truth=arith.check_steps,
        answer_fn=lambda p: str(arith.parse_problem(p).answer),
    )
    stats["label_seconds"] = time.perf_counter() - t0
    # OmegaPRM is a cost comparison, not a training input: run it on the first omega_solutions
    # solutions and count full MC's rollouts on the same ones.
    sub = items[: s["omega_solutions"]]
    fe, used = labeling.omega_first_errors(pol, _grade, sub, s["k"], jax.random.fold_in(rng, 2), max_new_tokens=128)
    exact_fe = np.asarray([arith.first_error(p, st) for p, st, _ in sub])
    wrong = exact_fe >= 0
    mc_fe = np.asarray([next((i for i, v in enumerate(x.hard) if v == 0), -1) for x in labelled[: len(sub)]])
    stats.update(
        {
            "omega_solutions": len(sub),
            "omega_rollouts": int(used),
            "full_mc_rollouts_same_solutions": int(sum(max(len(st) - 1, 0) for _, st, _ in sub) * s["k"]),
            "omega_first_error_exact_match": float(np.mean(fe[wrong] == exact_fe[wrong])) if wrong.any() else None,
            "mc_hard_first_error_exact_match": float(np.mean(mc_fe[wrong] == exact_fe[wrong])) if wrong.any() else None,
            "policy_accuracy_on_label_problems": float(np.mean([c for _, _, c in items])),
            "solutions_with_error_in_omega_subset": int(wrong.sum()),
            "sampler_tokens_per_s": pol.sampler.tokens_per_second,
        }
    )
    # Held-out validation split by problem (no problem's solutions on both sides).
    n_val = max(1, int(round(s["val_frac"] * len(problems))))
    val_problems = set(problems[len(problems) - n_val :])
    train = [x for x in labelled if x.problem not in val_problems]
    val = [x for x in labelled if x.problem in val_problems]
    if not train or not val:
        raise ValueError(
            f"labels: {len(train)} training / {len(val)} validation solutions; need both "
            f"(label_problems={s['label_problems']}, val_frac={s['val_frac']})"
        )
    stats.update({"train_solutions": len(train), "val_solutions": len(val), "val_problems": n_val})
    labeling.write_jsonl(path, train)
    labeling.write_jsonl(os.path.join(os.path.dirname(path), "val.jsonl"), val)
    jsonio.dump(stats, stats_path)
    log(
        f"labels: {len(items)} solutions ({len(train)} train / {len(val)} val), "
        f"{stats['mc_rollouts']} MC rollouts, OmegaPRM {used}; sampler {pol.sampler.tokens_per_second:.0f} tok/s"
    )
    return stats


def stage_verifier(workdir: str, name: str, s: dict, log) -> None:
    out = os.path.join(workdir, name)
    if _done(os.path.join(out, "DONE")):
        log(f"{name}: exists, skipped")
        return
    objective = OBJECTIVE[name]
    n_train = sum(1 for line in open(os.path.join(workdir, "labels", "train.jsonl")) if line.strip())
    # A few passes over many labelled solutions, not many passes over few (those overfit).
    steps = max(1, int(np.ceil(s["verifier_passes"] * n_train / s["batch_size"])))
    c = _base_config(objective, s, os.path.join(workdir, "policy"), steps)
    c.data.source = "stepwise_jsonl"
    c.data.path = os.path.join(workdir, "labels", "train.jsonl")
    c.data.oracle_q = False
    # Math-Shepherd's two label kinds: hard (some rollout reached the answer) or soft (the MC fraction).
    # The Q^pi verifier always learns the soft fraction: the policy's own success probability.
    labels = "soft" if name == "qpi" else s["bce_labels"]
    c.data.label_field = {"hard": "hard_labels", "soft": "labels"}[labels]
    m = loop.run(c, out)
    open(os.path.join(out, "DONE"), "w").write(json.dumps({"loss": m.get("loss")}))
    log(
        f"{name}: trained {steps} steps ({s['verifier_passes']} passes over {n_train} solutions), "
        f"final loss {m.get('loss'):.4f}"
    )


def _verifiers(workdir: str) -> dict:
    tok = CharTokenizer()
    out = {}
    for name in VERIFIERS:
        cfg, params, config = loop.load_trained(os.path.join(workdir, name))
        if name == "implicit":
            _, ref, _ = loop.load_trained(os.path.join(workdir, "policy"))
            out[name] = Verifier(
                "implicit", cfg, params, tok, marker=MARKER, ref_params=ref, beta=float(config.loss.beta), name=name
            )
        else:
            out[name] = Verifier("score", cfg, params, tok, marker=MARKER, name=name)
    return out


def validation(workdir: str, vs: dict) -> dict:
    """Returns per-verifier step AUROC on the held-out labelled solutions (labels/val.jsonl).

    'auroc_exact': against exact step correctness; 'auroc_mc': against the hard MC label (the
    training target's own kind); 'brier_mc': mean squared error to the soft MC label (score verifiers).
    """
    rows = labeling.read_jsonl(os.path.join(workdir, "labels", "val.jsonl"))
    exact = np.concatenate([np.asarray(r["meta"]["step_correct"], float) for r in rows])
    hard = np.concatenate([np.asarray(r["hard_labels"], float) for r in rows])
    soft = np.concatenate([np.asarray(r["labels"], float) for r in rows])
    out = {"solutions": len(rows), "steps": int(exact.size)}
    for name, v in vs.items():
        sc = v.score_all([r["prompt"] for r in rows], [r["completions"] for r in rows])
        vals = np.concatenate(sc["values"])
        out[name] = {"auroc_exact": evaluate.step_auroc(vals, exact), "auroc_mc": evaluate.step_auroc(vals, hard)}
        if v.kind == "score":
            out[name]["brier_mc"] = float(np.mean((vals - soft) ** 2))
    return out


def stage_eval(workdir: str, s: dict, log) -> dict:
    path = os.path.join(workdir, "eval.json")
    if _done(path):
        log("eval: exists, skipped")
        return json.load(open(path))
    pol, vs = _policy(os.path.join(workdir, "policy"), s["sample_batch"]), _verifiers(workdir)
    problems = _problems(2, s["eval_problems"])
    gold = [arith.parse_problem(p).answer for p in problems]
    n = s["n"]
    rng = jax.random.PRNGKey(2)
    t0 = time.perf_counter()
    sols = search.sample_solutions(pol, problems, n, jax.random.fold_in(rng, 0), max_new_tokens=128)
    sample_s = time.perf_counter() - t0
    flat = [(i, x) for i, xs in enumerate(sols) for x in xs]
    correct = np.asarray([[x.answer is not None and x.answer == gold[i] for x in xs] for i, xs in enumerate(sols)])
    answers = [[x.answer for x in xs] for xs in sols]
    gen_tokens = np.asarray([[x.gen_tokens for x in xs] for xs in sols])
    ok = [(i, x) for i, x in flat if x.steps]
    truth = [arith.check_steps(problems[i], x.steps) for i, x in ok]
    res = {
        "n": n,
        "problems": len(problems),
        "sample_seconds": sample_s,
        "mean_gen_tokens_per_solution": float(gen_tokens.mean()),
        "policy_accuracy": float(correct.mean()),
        "curves": {},
        "auroc": {},
        "tokens": {},
    }
    res["val"] = validation(workdir, vs)
    scores: dict = {}
    for name, v in vs.items():
        before = v.tokens_scored
        out = v.score_all([problems[i] for i, _ in ok], [x.steps for _, x in ok])
        res["tokens"][f"verifier_{name}_per_problem"] = (v.tokens_scored - before) / len(problems)
        res["auroc"][name] = evaluate.step_auroc(
            np.concatenate(out["values"]), np.concatenate([np.asarray(t, float) for t in truth])
        )
        rew = {id(x): r for (_, x), r in zip(ok, out["rewards"])}
        val = {id(x): q for (_, x), q in zip(ok, out["values"])}
        scores[name] = (
            [[rew.get(id(x), np.zeros(0)) for x in xs] for xs in sols],
            [[val.get(id(x), np.zeros(0)) for x in xs] for xs in sols],
        )
    ns = [2**i for i in range(int(np.log2(n)) + 1)]

    def curve(name, sc, method):
        c = evaluate.best_of_n_curve(sc, correct, answers, ns=ns, method=method, n_boot=200)
        res["curves"][name] = {"ns": ns, "acc": c.acc.tolist(), "lo": c.lo.tolist(), "hi": c.hi.tolist()}

    curve("majority", None, "majority")
    for name in VERIFIERS:
        kind = vs[name].kind
        rews, vals = scores[name]
        for agg in AGGS[kind]:
            # A solution without steps has no answer, so it never wins whatever it scores.
            sc = np.asarray(
                [search.solution_scores(r, agg, empty_value=0.0, step_values=v) for r, v in zip(rews, vals)]
            )
            curve(f"{name}/{agg}/argmax", sc, "argmax")
            if agg in VOTE_AGGS:  # weighted vote sums probabilities: an implicit PRM's through a sigmoid
                curve(f"{name}/{agg}/weighted_vote", search.vote_weights(sc, kind == "implicit"), "weighted_vote")
    res["tokens"]["best_of_n_gen_per_problem_at_N"] = {str(k): float(gen_tokens.mean() * k) for k in ns}
    # Beam searches at N = n beams. BCE beam: rank and answer by the BCE-PRM. PAV beam (Setlur et
    # al.): rank by Q^pi + alpha * A^mu, Q^pi from the soft-label verifier of the policy itself, A^mu
    # from the PAV (the Best-of-K prover's Q); the answer by Q^pi.
    res["beam_terms"] = {
        "beam_bce": {"rank": "bce", "answer": "bce"},
        "beam_pav": {"rank": f"qpi + {s['alpha']} * A(pav)", "answer": "qpi"},
    }
    for label, rank, final in (
        ("beam_bce", search.last_step_ranker(vs["bce"]), search.last_step_ranker(vs["bce"])),
        ("beam_pav", search.pav_ranker(vs["qpi"], vs["pav"], s["alpha"]), search.last_step_ranker(vs["qpi"])),
    ):
        t0 = time.perf_counter()
        out = search.beam_search(
            pol,
            problems,
            jax.random.fold_in(rng, 7),
            n_beams=n,
            width=s["beam_width"],
            rank_fn=rank,
            final_fn=final,
            max_steps=6,
            step_tokens=48,
            finish_tokens=128,
        )
        acc = np.asarray([r.answer is not None and r.answer == g for r, g in zip(out, gold)], float)
        boot = np.random.default_rng(0).integers(0, len(acc), (1000, len(acc)))
        res["curves"][label] = {
            "ns": [n],
            "acc": [float(acc.mean())],
            "lo": [float(np.quantile(acc[boot].mean(1), 0.025))],
            "hi": [float(np.quantile(acc[boot].mean(1), 0.975))],
        }
        res["tokens"][f"{label}_gen_per_problem"] = float(np.mean([r.gen_tokens for r in out]))
        res["tokens"][f"{label}_verifier_per_problem"] = float(np.mean([r.verifier_tokens for r in out]))
        res[f"{label}_seconds"] = time.perf_counter() - t0
    res["sampler_tokens_per_s"] = pol.sampler.tokens_per_second
    # One solution with per-step scores for the figure: the first sampled solution with an error.
    pick = next(((i, x) for i, x in ok if not all(arith.check_steps(problems[i], x.steps))), ok[0])
    i, x = pick
    res["example"] = {
        "problem": problems[i],
        "steps": x.steps,
        "truth": [bool(t) for t in arith.check_steps(problems[i], x.steps)],
        "bce": [float(v) for v in vs["bce"].step_scores([problems[i]], [x.steps])[0]],
    }
    jsonio.dump(res, path)
    return res


def _at(res, name, n=None):
    c = res["curves"][name]
    j = len(c["ns"]) - 1 if n is None else c["ns"].index(n)
    return c["acc"][j], c["lo"][j], c["hi"][j]


def _orm_at_tokens(res, tokens: float):
    """Returns (N, acc) of ORM best-of-N (last-step score, argmax) at the largest N within `tokens`."""
    per = res["mean_gen_tokens_per_solution"]
    c = res["curves"]["orm/last/argmax"]
    ok = [j for j, k in enumerate(c["ns"]) if k * per <= tokens * 1.05] or [0]
    j = ok[-1]
    return c["ns"][j], c["acc"][j]


def figures(res: dict) -> list[dict]:
    """Returns the issue's four figures: name, measured values, and whether each holds."""
    n = res["n"]
    maj = _at(res, "majority", n)[0]
    wv = _at(res, "bce/min/weighted_vote", n)[0]
    pav = _at(res, "beam_pav")[0]
    toks = res["tokens"]["beam_pav_gen_per_problem"]
    orm_n, orm = _orm_at_tokens(res, toks)
    bce16, imp16 = _at(res, "bce/min/argmax", n)[0], _at(res, "implicit/min/argmax", n)[0]
    return [
        {
            "figure": f"BCE-PRM weighted vote (min) > majority vote at N={n}",
            "measured": f"{wv:.3f} vs {maj:.3f}",
            "holds": wv > maj,
        },
        {
            "figure": "PAV beam >= ORM best-of-N at equal generated tokens",
            "measured": f"PAV beam {pav:.3f} ({toks:.0f} tok/problem) vs ORM best-of-{orm_n} {orm:.3f}",
            "holds": pav >= orm,
        },
        {
            "figure": "BCE-PRM step AUROC vs exact ground truth >= 0.85",
            "measured": _num(res["auroc"]["bce"]),
            "holds": res["auroc"]["bce"] is not None and res["auroc"]["bce"] >= 0.85,
        },
        {
            "figure": f"implicit PRM within 3 points of BCE-PRM at best-of-{n} (min, argmax)",
            "measured": f"{imp16:.3f} vs {bce16:.3f}",
            "holds": imp16 >= bce16 - 0.03,
        },
    ]


def _num(x) -> str:
    """Returns x with 3 decimals, or 'n/a' for a missing or undefined value (e.g. AUROC of one class)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def write_report(workdir: str, res: dict, label_stats: dict, wall: dict) -> str:
    """Writes report.md and the PNGs; returns the markdown table printed to the console."""
    from prm_jax import plots

    n = res["n"]
    main = [
        "majority",
        "bce/min/argmax",
        "bce/min/weighted_vote",
        "bce/last/argmax",
        "orm/last/argmax",
        "pav/min/argmax",
        "implicit/min/argmax",
        "beam_bce",
        "beam_pav",
    ]
    plots.plot_accuracy_vs_n(
        {k: tuple(res["curves"][k][f] for f in ("ns", "acc", "lo", "hi")) for k in main},
        os.path.join(workdir, "accuracy_vs_n.png"),
        title="Arithmetic task: accuracy vs N",
        caption=f"{res['problems']} held-out problems; bands / bars: bootstrap 95% CI",
    )
    ex = res["example"]
    plots.plot_step_scores(
        ex["steps"],
        ex["bce"],
        [int(t) for t in ex["truth"]],
        os.path.join(workdir, "solution_steps.png"),
        title="BCE-PRM step scores",
    )
    rows = [
        "| method | " + " | ".join(f"N={k}" for k in res["curves"]["majority"]["ns"]) + " | gen tok/problem at max N |",
        "|---|" + "---|" * (len(res["curves"]["majority"]["ns"]) + 1),
    ]
    per = res["mean_gen_tokens_per_solution"]
    for k in sorted(res["curves"]):
        c = res["curves"][k]
        cells = {nn: f"{a:.3f} [{lo:.2f}, {hi:.2f}]" for nn, a, lo, hi in zip(c["ns"], c["acc"], c["lo"], c["hi"])}
        tok = res["tokens"].get(f"{k}_gen_per_problem", per * n)
        rows.append(
            f"| {k} | " + " | ".join(cells.get(nn, "") for nn in res["curves"]["majority"]["ns"]) + f" | {tok:.0f} |"
        )
    table = "\n".join(rows)
    short = "\n".join(rows[:2] + [r for r in rows[2:] if r.split(" | ")[0][2:] in main])
    figs = figures(res)
    md = [
        "# prm-jax demo report\n",
        f"Policy accuracy (one sample): {res['policy_accuracy']:.3f} on {res['problems']} held-out problems, "
        f"N up to {n}; mean generated tokens per solution {per:.1f}.\n",
        *(
            ["**The policy is always or never right here, so the comparisons below are degenerate.**\n"]
            if res["policy_accuracy"] in (0.0, 1.0)
            else []
        ),
        *(
            [
                f"**The policy is right on under {WEAK_POLICY:.0%} of samples: its correct answers are mostly "
                "lucky guesses, so the figures below are not evidence either way (train it longer, e.g. "
                "`--set policy_steps=2000`).**\n"
            ]
            if 0.0 < res["policy_accuracy"] < WEAK_POLICY
            else []
        ),
        "## Figures\n",
        "| figure | measured | holds |",
        "|---|---|---|",
    ]
    md += [f"| {f['figure']} | {f['measured']} | {'yes' if f['holds'] else 'NO'} |" for f in figs]
    md += [
        "\nVerifiers: `bce` BCE-PRM on hard MC labels (P(some of K rollouts succeeds)), `qpi` BCE on "
        "soft MC labels (the policy's own Q^pi), `orm` outcome RM, `pav` the Best-of-K prover's Q^mu, "
        "`implicit` beta * log pi/pi_ref from outcome labels (`last` = q_T, weighted vote on sigmoid)."
    ]
    md += [f"Beam `{k}`: ranked by {v['rank']}, answer by {v['answer']}." for k, v in res.get("beam_terms", {}).items()]
    md += ["\n## Step AUROC against exact ground truth (held-out samples)\n", "| verifier | AUROC |", "|---|---|"]
    md += [f"| {k} | {_num(v)} |" for k, v in res["auroc"].items()]
    val = res.get("val")
    if val:
        md += [
            f"\n## Held-out validation ({val['solutions']} labelled solutions, {val['steps']} steps, "
            "problems not trained on)\n",
            "| verifier | AUROC vs exact | AUROC vs hard MC | Brier vs soft MC |",
            "|---|---|---|---|",
        ]
        md += [
            f"| {k} | {_num(val[k]['auroc_exact'])} | {_num(val[k]['auroc_mc'])} | {_num(val[k].get('brier_mc'))} |"
            for k in VERIFIERS
            if k in val
        ]
    md += [
        "\n## Accuracy vs N (bootstrap 95% CI)\n",
        table,
        "\n![accuracy vs N](accuracy_vs_n.png)\n\n![one solution](solution_steps.png)\n",
        "## Compute\n",
        "```",
        json.dumps(res["tokens"], indent=1),
        "```",
        "\n## Labelling\n",
        "```",
        json.dumps(label_stats, indent=1),
        "```",
        "\n## Wall time per stage (s; a resumed run shows ~0 for skipped stages)\n",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in wall.items()],
        "\n```",
        json.dumps(wall, indent=1),
        "```",
    ]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return short + "\n\n" + "\n".join(f"{'OK ' if f['holds'] else 'NO '} {f['figure']}: {f['measured']}" for f in figs)


def run(workdir: str, quick: bool = False, log=print, overrides: dict | None = None) -> dict:
    """Runs every stage (skipping finished ones) and returns {'eval', 'labels', 'wall', 'figures'}.

    overrides: SETTINGS keys to change (e.g. {'policy_steps': 2000}); unknown keys are an error.
    """
    s = copy.deepcopy(SETTINGS["quick" if quick else "full"])
    bad = set(overrides or {}) - set(s)
    if bad:
        raise ValueError(f"unknown demo settings {sorted(bad)}; known: {sorted(s)}")
    s.update({k: type(s[k])(v) for k, v in (overrides or {}).items()})
    log(f"demo settings: {json.dumps(s)}")
    os.makedirs(workdir, exist_ok=True)
    wall, t_all = {}, time.perf_counter()

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        wall[name] = round(time.perf_counter() - t0, 1)
        log(f"stage {name}: {wall[name]:.1f}s")
        return out

    timed("policy", stage_policy, workdir, s, log)
    label_stats = timed("labels", stage_labels, workdir, s, log)
    for name in VERIFIERS:
        timed(name, stage_verifier, workdir, name, s, log)
    res = timed("eval", stage_eval, workdir, s, log)
    wall["total"] = round(time.perf_counter() - t_all, 1)
    table = write_report(workdir, res, label_stats, wall)
    log(table)
    log(f"report: {os.path.join(workdir, 'report.md')}  wall {wall['total']:.0f}s")
    return {"eval": res, "labels": label_stats, "wall": wall, "figures": figures(res)}
