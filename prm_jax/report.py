"""The demo's report: its figures (each with its CI, the paper's claim and whether it holds), report.md,
report.json and the two PNGs."""

from __future__ import annotations

import json
import os

import numpy as np

from prm_jax import evaluate
from prm_jax import jsonio

WEAK_POLICY = 0.10  # below this one-sample accuracy the report says the figures are not evidence
# The methods of the plot, the short console table and the demo's final.json (`demo.headline`).
MAIN = (
    "oracle",
    "majority",
    "bce/min/argmax",
    "bce/min/weighted_vote",
    "exact/min/argmax",
    "orm/last/argmax",
    "pav/min/argmax",
    "implicit/min/argmax",
    "likelihood/min/argmax",
    "base_likelihood/min/argmax",
    "beam_bce",
    "beam_pav",
)


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


def _ci(res, name, n=None) -> dict:
    a, lo, hi = _at(res, name, n)
    return {"value": a, "ci": [lo, hi]}


def _diff(res, a: str, b: str, n_a=None, n_b=None) -> dict | None:
    """Returns {"value", "ci"}: curve a at N = n_a minus curve b at n_b (None: each curve's last N) on the
    same problems, with a paired bootstrap CI; None where the result has no per-problem accuracies (an
    eval.json written before they were kept)."""
    pp = res.get("per_problem_acc") or {}
    if a not in pp or b not in pp:
        return None
    rows = []
    for name, k in ((a, n_a), (b, n_b)):
        ns = res["curves"][name]["ns"]
        rows.append(pp[name][len(ns) - 1 if k is None else ns.index(k)])
    d, lo, hi = evaluate.paired_difference(*rows, n_boot=res["bootstrap"]["n_boot"], seed=res["bootstrap"]["seed"])
    return {"value": d, "ci": [lo, hi]}


def _fmt_diff(v: dict | None, prefix: str = "; paired difference ") -> str:
    """Returns prefix + '+0.012 [-0.020, +0.041]' for a `_diff`, '' for None."""
    if v is None:
        return ""
    return f"{prefix}{v['value']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"  # 3 decimals: the sign of a bound near 0


def _auroc(res, name) -> dict:
    return {"value": res["auroc"].get(name), "ci": res.get("auroc_ci", {}).get(name)}


def _fmt(v: dict) -> str:
    ci = v.get("ci")  # None, or bounds that are NaN (one class) or null (NaN read back from eval.json)
    finite = ci is not None and all(x is not None and np.isfinite(x) for x in ci)
    tail = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if finite else ""
    return _num(v["value"]) + tail


def _beats(key: str, claim: str, figure: str, a: tuple[str, dict], b: tuple[str, dict], diff) -> dict:
    """Returns a figure that holds when a's value is above b's: both with their CIs, and their paired
    difference (`_diff`, or None)."""
    (a_name, a_val), (b_name, b_val) = a, b
    return {
        "key": key,
        "claim": claim,
        "figure": figure,
        "values": {a_name: a_val, b_name: b_val, "difference": diff},
        "measured": f"{_fmt(a_val)} vs {_fmt(b_val)}" + _fmt_diff(diff),
        "holds": a_val["value"] > b_val["value"],
    }


def figures(res: dict, label_stats: dict | None = None) -> list[dict]:
    """Returns the issue's figures: key, the paper's claim, the measured values (each with its
    bootstrap 95% CI), the measured text and whether the figure holds."""
    n = res["n"]
    maj, wv = _ci(res, "majority", n), _ci(res, "bce/min/weighted_vote", n)
    arg = res["curves"]["bce/min/argmax"]
    steps = {
        f"N={k} - N={m}": _diff(res, "bce/min/argmax", "bce/min/argmax", k, m) for m, k in zip(arg["ns"], arg["ns"][1:])
    }
    falls = [
        f"{a:.3f}->{b:.3f} (N={m}->{k}{_fmt_diff(steps[f'N={k} - N={m}'], '; ')})"
        for m, k, a, b in zip(arg["ns"], arg["ns"][1:], arg["acc"], arg["acc"][1:])
        if b < a - 0.01
    ]
    pav, bbeam = _ci(res, "beam_pav"), _ci(res, "beam_bce")
    toks = res["tokens"]["beam_pav_gen_per_problem"]
    orm_n, _ = _orm_at_tokens(res, toks)
    orm = _ci(res, "orm/last/argmax", orm_n)
    bce_n, imp_n = _ci(res, "bce/min/argmax", n), _ci(res, "implicit/min/argmax", n)
    bce_auc, exact_auc = _auroc(res, "bce"), _auroc(res, "exact")
    # Each label source's data and what the sampler spent on it (the implicit PRM's selling point:
    # outcome labels cost no rollouts, so the same budget buys more solutions).
    ls = label_stats or {}
    budget = {
        k: ls[k]
        for k in ("train_solutions", "sampler_tokens", "outcome_solutions", "outcome_sampler_tokens")
        if ls.get(k) is not None
    }
    budget_text = (
        f"; outcome labels on {budget['outcome_solutions']:,} solutions ({budget['outcome_sampler_tokens']:,} "
        f"sampler tokens), MC labels on {budget['train_solutions']:,} ({budget['sampler_tokens']:,})"
        if len(budget) == 4
        else ""
    )
    lucky = ls.get("outcome_right_with_wrong_step")
    if lucky is not None:
        budget["outcome_right_with_wrong_step"] = lucky
        budget_text += f"; {lucky:.0%} of the solutions labelled right have a wrong step"
    # Exact step labels cost no rollout either, so the exact-label PRM may read the outcome solutions.
    sols = ls.get("verifier_solutions") or {}
    exact_data = {f"{k}_solutions": sols[k] for k in ("exact", "bce") if k in sols}
    exact_text = (
        f"; exact step labels on {sols['exact']:,} solutions, MC labels on {sols['bce']:,}"
        if len(exact_data) == 2
        else ""
    )
    # Paired differences (same problems, one bootstrap): the figures compare methods, and two
    # accuracies' own CIs overlap even where one method wins on the same problems.
    vote_diff = _diff(res, "bce/min/weighted_vote", "majority", n, n)
    pav_orm = _diff(res, "beam_pav", "orm/last/argmax", None, orm_n)
    pav_bce = _diff(res, "beam_pav", "beam_bce")
    imp_diff = _diff(res, "implicit/min/argmax", "bce/min/argmax", n, n)
    out = [
        _beats(
            "bce_weighted_vote_beats_majority",
            "PRM-weighted voting beats majority voting (Math-Shepherd, Wang et al. 2024; Lightman et al. 2023)",
            f"BCE-PRM weighted vote (min) > majority vote at N={n}",
            ("bce_weighted_vote", wv),
            ("majority", maj),
            vote_diff,
        ),
        {
            "key": "bce_argmax_does_not_fall",
            "claim": "a PRM's best-of-N keeps improving as N grows (Lightman et al. 2023, Fig. 3)",
            "figure": "BCE-PRM (min) argmax best-of-N: each N >= the one before, within 1 point",
            "values": {
                **{
                    f"N={k}": {"value": a, "ci": [lo, hi]}
                    for k, a, lo, hi in zip(arg["ns"], arg["acc"], arg["lo"], arg["hi"])
                },
                **{k: v for k, v in steps.items() if v is not None},
            },
            "measured": " ".join(f"{a:.3f}" for a in arg["acc"]) + (f"; falls {', '.join(falls)}" if falls else ""),
            "holds": not falls,
        },
        {
            "key": "pav_beam_beats_orm_and_bce_beam",
            "claim": "PAV beam search (Q^pi + alpha * A^mu) is >8% more accurate and 1.5-5x more compute-"
            "efficient than ORM best-of-N (Setlur et al. 2024)",
            "figure": "PAV beam >= ORM best-of-N at equal generated tokens and >= BCE-PRM beam",
            "values": {
                "beam_pav": pav,
                f"orm_best_of_{orm_n}": orm,
                "beam_bce": bbeam,
                "beam_pav_tokens": toks,
                "difference_vs_orm": pav_orm,
                "difference_vs_bce_beam": pav_bce,
            },
            "measured": f"PAV beam {_fmt(pav)} ({toks:.0f} tok/problem) vs ORM best-of-{orm_n} {_fmt(orm)}, "
            f"BCE beam {_fmt(bbeam)}"
            + _fmt_diff(pav_orm, "; paired differences: vs ORM ")
            + _fmt_diff(pav_bce, ", vs BCE beam "),
            "holds": pav["value"] >= orm["value"] and pav["value"] >= bbeam["value"],
        },
        {
            "key": "bce_step_auroc",
            "claim": "MC labels (Math-Shepherd) train a PRM that finds wrong steps",
            "figure": "BCE-PRM (MC labels) step AUROC vs exact ground truth >= 0.85",
            "values": {"bce": bce_auc},
            "measured": _fmt(bce_auc),
            "holds": bce_auc["value"] is not None and bce_auc["value"] >= 0.85,
        },
        {
            "key": "exact_step_auroc",
            "claim": "step labels that are exact (PRM800K's human labels) train a better PRM than MC labels",
            "figure": "exact-label PRM step AUROC vs exact ground truth >= 0.95",
            "values": {"exact": exact_auc, **exact_data},
            "measured": _fmt(exact_auc) + exact_text,
            "holds": exact_auc["value"] is not None and exact_auc["value"] >= 0.95,
        },
        {
            "key": "implicit_close_to_bce",
            "claim": "an implicit PRM from outcome labels only matches an MC-labelled PRM (Yuan et al. 2024)",
            "figure": f"implicit PRM within 3 points of BCE-PRM at best-of-{n} (min, argmax)",
            "values": {"implicit": imp_n, "bce": bce_n, "difference": imp_diff, **budget},
            "measured": f"{_fmt(imp_n)} vs {_fmt(bce_n)}" + _fmt_diff(imp_diff) + budget_text,
            "holds": imp_n["value"] >= bce_n["value"] - 0.03,
        },
    ]
    if "implicit/min/weighted_vote" in res["curves"]:
        # The paper's own finding for the CE loss, the demo's: short of majority voting by argmax, above
        # it as weights of a vote. Reported beside the argmax figure, which it does not replace.
        imp_wv = _ci(res, "implicit/min/weighted_vote", n)
        out.append(
            _beats(
                "implicit_vote_beats_majority",
                "an implicit PRM trained with the CE loss does not beat majority voting by best-of-N alone, but "
                "does as the weights of a vote (Yuan et al. 2024, implicit PRM + majority voting)",
                f"implicit PRM weighted vote (min) > majority vote at N={n}",
                ("implicit_weighted_vote", imp_wv),
                ("majority", maj),
                _diff(res, "implicit/min/weighted_vote", "majority", n, n),
            )
        )
    # The label-free baselines: the policy's own confidence, and that of the base the verifiers start from.
    for base, whose, claim in (
        (
            "likelihood",
            "the policy's",
            "step labels add to what the policy already knows: a trained PRM beats the "
            "policy's own confidence (no paper's figure; the label-free baseline every PRM should beat)",
        ),
        (
            "base_likelihood",
            "the verifier base's",
            "step labels add to what the verifiers' base model already "
            "knows: a trained PRM beats the base's own confidence (no paper's figure; the base is the policy "
            "trained a few more steps)",
        ),
    ):
        if f"{base}/min/argmax" in res["curves"]:
            out.append(
                _beats(
                    f"bce_beats_{base}",
                    claim,
                    f"BCE-PRM (min) argmax best-of-{n} > {whose} likelihood (least likely token)",
                    ("bce", bce_n),
                    (base, _ci(res, f"{base}/min/argmax", n)),
                    _diff(res, "bce/min/argmax", f"{base}/min/argmax", n, n),
                )
            )
    if label_stats and label_stats.get("omega_rollouts"):
        full, om = label_stats["full_mc_rollouts_same_solutions"], label_stats["omega_rollouts"]
        match = label_stats.get("omega_first_error_matches_full_mc")
        own = label_stats.get("omega_own_draw_first_error_matches_full_mc")
        om_exact = label_stats.get("omega_first_error_exact_match")
        mc_exact = label_stats.get("mc_hard_first_error_exact_match")
        again = label_stats.get("full_mc_repeat_first_error_matches_full_mc")
        out.append(
            {
                "key": "omega_fewer_rollouts",
                "claim": "OmegaPRM's binary search finds the first error with fewer rollouts than full MC "
                "(Luo et al. 2024)",
                "figure": "OmegaPRM: the full-MC first error (>= 90% of solutions, on the same rollouts per "
                "prefix) with fewer rollouts",
                "values": {
                    "rollout_ratio": full / om,
                    "first_error_matches_full_mc": match,
                    "own_draw_matches_full_mc": own,
                    "omega_first_error_exact_match": om_exact,
                    "mc_first_error_exact_match": mc_exact,
                    "full_mc_repeat_matches_full_mc": again,
                },
                # On full MC's own rollouts (common random numbers) a mismatch is the binary search's; on
                # fresh draws MC noise adds to it, as much as a second full-MC draw shows full MC
                # disagreeing with itself. Agreement with the exact first error says which labels are better.
                "measured": f"{full} / {om} = {full / om:.2f}x fewer rollouts; same first error on "
                f"{_num(match)} of {label_stats['omega_solutions']} solutions (on fresh draws: OmegaPRM "
                f"{_num(own)}, a second full MC {_num(again)}); exact first error found by OmegaPRM on "
                f"{_num(om_exact)}, by full MC on {_num(mc_exact)} of the wrong ones",
                "holds": om < full and match is not None and match >= 0.9,
            }
        )
    return out


def _num(x) -> str:
    """Returns x with 3 decimals, or 'n/a' for a missing or undefined value (e.g. AUROC of one class)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def last_doubling(res: dict, names=MAIN) -> dict:
    """Returns {method: {"value", "ci"}}: each curve of `names` (and its weighted vote) at the largest N
    minus at half of it, paired on the same problems; {} without per-problem accuracies.

    A verifier whose argmax falls here is exploited at large N: its highest scores go to wrong
    solutions more often the more candidates it sees (the issue's first symptom).
    """
    out = {}
    for k in (k for k in names if k != "oracle"):  # the ceiling, not a method
        for name in dict.fromkeys((k, k.replace("/argmax", "/weighted_vote"))):
            ns = res["curves"].get(name, {}).get("ns", [])
            d = _diff(res, name, name, ns[-1], ns[-2]) if len(ns) > 1 else None
            if d is not None:
                out[name] = d
    return out


def plot_curves(res: dict, names=MAIN) -> tuple[dict, dict]:
    """Returns the curves `names` of `search.evaluate_methods`'s result as (ns, acc, lo, hi) against N
    and against tokens per problem.

    Against N a beam search sits at the N whose best-of-N generates as many tokens as it did. Against
    compute every method's x is its generated plus verifier tokens per problem: best-of-N at N pays N
    solutions and the verifier's tokens for N of them; the oracle (not a method) is left out.
    """
    per, n, tok = res["mean_gen_tokens_per_solution"], res["n"], res["tokens"]
    by_n, by_tokens = {}, {}
    for k in names:
        c = res["curves"][k]
        acc = (c["acc"], c["lo"], c["hi"])
        if f"{k}_gen_per_problem" in tok:  # a search, measured once
            gen, ver = tok[f"{k}_gen_per_problem"], tok[f"{k}_verifier_per_problem"]
            by_n[k] = ([gen / per], *acc)
            by_tokens[k] = ([gen + ver], *acc)
            continue
        by_n[k] = (c["ns"], *acc)
        if k != "oracle":
            ver = tok.get(f"verifier_{k.split('/')[0]}_per_problem", 0.0) / n  # per scored solution
            by_tokens[k] = ([(per + ver) * m for m in c["ns"]], *acc)
    return by_n, by_tokens


def write_report(workdir: str, res: dict, label_stats: dict, wall: dict) -> str:
    """Writes report.md and the PNGs; returns the markdown table printed to the console."""
    from prm_jax import plots

    n = res["n"]

    by_n, by_tokens = plot_curves(res)
    caption = (
        f"{res['problems']} held-out problems, seed {res.get('seed')}; bands (majority, BCE-PRM vote) and bars: "
        "bootstrap 95% CI over problems; oracle = pass@N"
    )
    plots.plot_accuracy_vs_n(
        by_n,
        os.path.join(workdir, "accuracy_vs_n.png"),
        title="Arithmetic task: accuracy vs N",
        caption=caption,
        bands=("majority", "bce/min/weighted_vote"),
        xlabel="N (solutions per problem); beam searches at the N of best-of-N with as many generated tokens",
    )
    plots.plot_accuracy_vs_compute(
        by_tokens,
        os.path.join(workdir, "accuracy_vs_compute.png"),
        title="Arithmetic task: accuracy at equal compute",
        caption=caption.replace("; oracle = pass@N", ""),
        bands=("majority", "bce/min/weighted_vote"),
    )
    ex = res["example"]
    plots.plot_step_scores(
        ex["steps"],
        ex["scores"]["bce"],
        [int(t) for t in ex["truth"]],
        os.path.join(workdir, "solution_steps.png"),
        title=f"BCE-PRM step scores on a held-out solution with an error: {ex['problem']}",
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
    short = "\n".join(rows[:2] + [r for r in rows[2:] if r.split(" | ")[0][2:] in MAIN])
    figs = figures(res, label_stats)
    md = [
        "# prm-jax demo report\n",
        f"Seed {res.get('seed')} (`--config.seed`; the same seed on the same machine gives the same figures).\n",
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
                "`--config.policy.train.steps=2000`).**\n"
            ]
            if 0.0 < res["policy_accuracy"] < WEAK_POLICY
            else []
        ),
        "## Figures (bootstrap 95% CI in brackets)\n",
        "| figure | the paper's claim | measured | holds |",
        "|---|---|---|---|",
    ]
    md += [f"| {f['figure']} | {f['claim']} | {f['measured']} | {'yes' if f['holds'] else 'NO'} |" for f in figs]
    md += [
        "\nVerifiers: `bce` BCE-PRM on hard MC labels (P(some of K rollouts succeeds)), `exact` BCE-PRM on "
        "the task's exact step correctness (the analogue of PRM800K's human labels; on the outcome-labelled "
        "solutions when `config.verifier_data.exact` is 'outcomes': these labels need no rollout), `qpi` BCE on "
        "soft MC labels (the policy's own Q^pi), `orm` outcome RM, `pav` the Best-of-K prover's Q^mu, "
        "`implicit` beta * log pi/pi_ref from outcome labels (`last` = q_T, weighted vote on sigmoid), "
        "`likelihood` no labels: the policy's least likely shown token so far (sigmoid of its log-prob), "
        "the baseline a trained verifier should beat; `base_likelihood` the same for the verifiers' base "
        "(the policy trained a few more SFT steps, `config.verifier_base`), which every verifier starts from; "
        "the score-head verifiers also read that feature "
        "(`model.score_likelihood`) and train their head alone on the frozen base; "
        "`oracle` picks a right answer whenever one of the N is right (pass@N, the ceiling)."
    ]
    md += [f"Beam `{k}`: ranked by {v['rank']}, answer by {v['answer']}." for k, v in res.get("beam_terms", {}).items()]
    doubling = last_doubling(res)
    if doubling:
        ns = res["curves"]["majority"]["ns"]
        md += [
            f"\n## The last doubling of N: accuracy at N={ns[-1]} minus at N={ns[-2]} (paired, bootstrap 95% CI)\n",
            "Below 0 with its interval: the method picks worse from more candidates.\n",
            "| method | difference |",
            "|---|---|",
        ]
        md += [f"| {k} | {_fmt_diff(v, '')} |" for k, v in doubling.items()]
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
            for k in val
            if isinstance(val[k], dict)
        ]
    picks = res.get("picks")
    if picks:
        md += [
            f"\n## What argmax best-of-{n} picks (from each problem's {n} samples)\n",
            "A verifier whose picks are right by luck (right answer, a wrong step) more often than the pool's, "
            "longer / shorter than the pool's, or drawn through a token the policy rarely draws (its least "
            "likely token's probability at temperature 1, median over picks, below the pool's) is exploited "
            "by that feature. Confidently wrong: a wrong answer with every token drawn at probability >= 0.5, "
            "an error the policy's own likelihood cannot see (the score heads read their base's, which can).\n",
            "| picks of | accuracy | every step right | right by luck | confidently wrong | steps | gen tokens "
            "| least likely token p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {k} | {v['accuracy']:.3f} | {v['all_steps_right']:.3f} | {v['right_by_luck']:.3f} | "
            f"{_num(v.get('confidently_wrong'))} | {v['mean_steps']:.2f} | {v['mean_gen_tokens']:.1f} | "
            f"{_num(v.get('least_likely_token_p'))} |"
            for k, v in picks.items()
            if v
        ]
    md += [
        "\n## Accuracy vs N (bootstrap 95% CI)\n",
        table,
        "\n![accuracy vs N](accuracy_vs_n.png)\n\n![accuracy at equal compute](accuracy_vs_compute.png)\n\n"
        "![one solution](solution_steps.png)\n",
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
    jsonio.dump(
        {
            "seed": res.get("seed"),
            "problems": res["problems"],
            "n": n,
            "policy_accuracy": res["policy_accuracy"],
            "figures": figs,
            "last_doubling": doubling,
            "curves": res["curves"],
            "auroc": {k: {"value": v, "ci": res.get("auroc_ci", {}).get(k)} for k, v in res["auroc"].items()},
            "validation": res.get("val"),
            "picks": res.get("picks"),
            "tokens": res["tokens"],
            "labelling": label_stats,
            "wall_seconds": wall,
        },
        os.path.join(workdir, "report.json"),
    )
    return short + "\n\n" + "\n".join(f"{'OK ' if f['holds'] else 'NO '} {f['figure']}: {f['measured']}" for f in figs)
