"""The demo's report: its four figures (with whether each holds), report.md, and the two PNGs."""

from __future__ import annotations

import json
import os

import numpy as np

WEAK_POLICY = 0.10  # below this one-sample accuracy the report says the figures are not evidence


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
        ex["scores"]["bce"],
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
            for k in val
            if isinstance(val[k], dict)
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
