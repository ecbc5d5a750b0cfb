"""The RL comparison: every reward source x seeds of one RL config, then report.md, report.json and
rl_curves.png beside the papers' claims.

Layout: WORKDIR/SOURCE/seed_N is one `rl_loop.run` (resumable; a run with its final.json is not run
again, so a killed comparison picks up where it stopped). Confidence bands are Student-t 95%
intervals over seeds (a seed draws the problems, the samples and the held-out set); the gain of a
source over `outcome` is paired by seed. Sample efficiency: the samples a source needed for its
mean held-out accuracy to first reach the outcome-only baseline's final mean, against the
baseline's whole budget.
"""

from __future__ import annotations

import json
import os
import textwrap
from typing import Sequence

import numpy as np

from prm_jax import jsonio

BASELINE = "outcome"
CLAIMS = {
    "prime": "PRIME: 2.5x the sample efficiency of outcome-only RL (RLOO), and more accurate",
    "pav": "Rewarding Progress (PAV): 5-6x the sample efficiency of outcome-only RL, > 6% more accurate",
    "prm_sum": "PURE: summation-form credit gets reward-hacked (PRM reward rises while accuracy falls)",
    "prm_min": "PURE: min-form credit is not hacked; it trains stably (accuracy does not fall)",
}


def run_dir(workdir: str, source: str, seed: int) -> str:
    """Returns the folder of one (source, seed) run of a comparison."""
    return os.path.join(workdir, source, f"seed_{int(seed)}")


def compare(
    spec: str, workdir: str, seeds: Sequence[int], *, sources=None, overrides=(), progress: bool = True
) -> dict | None:
    """Runs every reward source (the experiment's `get_hyper` points, or `sources`) for each seed from
    the RL config `spec`, then writes the report; returns `write_report`'s figures, or None when a run
    was SIGTERM'd (its checkpoint is saved; the same call resumes it)."""
    from prm_jax import config as cfg_lib
    from prm_jax import rl, rl_loop, sweep

    path, arg = sweep.split_spec(spec)
    if sources is None:
        points = sweep.get_points(path, arg=arg)
        sources = [p["source"] for p in points if "source" in p] or list(rl.SOURCES)
    bad = [s for s in sources if s not in rl.SOURCES]
    if bad:
        raise ValueError(f"reward sources {bad}: give some of {rl.SOURCES}")
    for seed in seeds:
        for source in sources:
            wd = run_dir(workdir, source, seed)
            if os.path.exists(os.path.join(wd, "final.json")):
                continue
            over = [f"--config.source={source}", f"--config.seed={int(seed)}", *overrides]
            c = cfg_lib.apply_overrides(cfg_lib.load_config(spec), over)
            if c.get("stage") != "rl":
                raise ValueError(f"{spec} is not an RL stage config (no `stage = 'rl'`): see experiments/arith_rl.py")
            out = rl_loop.run(c, wd, progress=progress)
            if out.get("preempted"):
                return None  # SIGTERM: the run saved its checkpoint; the same call resumes it
    return write_report(workdir, sources, seeds)


def _t_band(x_SxK: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (mean, lo, hi) over axis 0: Student-t 95% (NaN bounds for one seed: no interval)."""
    from scipy import stats

    x = np.asarray(x_SxK, np.float64)
    m = x.mean(0)
    n = x.shape[0]
    if n < 2:
        return m, np.full_like(m, np.nan), np.full_like(m, np.nan)
    h = stats.t.ppf(0.975, n - 1) * x.std(0, ddof=1) / np.sqrt(n)
    return m, m - h, m + h


def _rows(wd: str) -> list[dict]:
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def load(workdir: str, sources: Sequence[str], seeds: Sequence[int]) -> dict:
    """Returns {source: {seed: (final.json, metrics rows)}} of the finished runs (missing ones named)."""
    out, missing = {}, []
    for s in sources:
        for seed in seeds:
            wd = run_dir(workdir, s, seed)
            try:
                with open(os.path.join(wd, "final.json")) as f:
                    final = json.load(f)
            except FileNotFoundError:
                missing.append(wd)
                continue
            out.setdefault(s, {})[int(seed)] = (final, _rows(wd))
    if missing:
        raise FileNotFoundError(f"unfinished runs (no final.json): {', '.join(missing)}")
    return out


def _slope(y: np.ndarray) -> float:
    """Returns the least-squares slope of y against its index (per iteration)."""
    y = np.asarray(y, np.float64)
    return float(np.polyfit(np.arange(len(y)), y, 1)[0]) if len(y) > 1 else 0.0


def figures(runs: dict, seeds: Sequence[int]) -> dict:
    """Returns every figure of the comparison (per seed and mean with its 95% band)."""
    seeds = [int(s) for s in seeds]
    out = {"seeds": seeds, "sources": {}}
    base = runs.get(BASELINE)
    base_curve = np.array([[a for _, a in base[s][0]["curve"]] for s in seeds]) if base else None
    base_final = base_curve[:, -1] if base else None
    for source, per_seed in runs.items():
        curves = np.array([[a for _, a in per_seed[s][0]["curve"]] for s in seeds])
        xs = [int(x) for x, _ in per_seed[seeds[0]][0]["curve"]]
        final = curves[:, -1]
        m, lo, hi = _t_band(final[:, None])
        rows = {s: per_seed[s][1] for s in seeds}
        f = {
            "samples": xs,
            "curve_mean": _t_band(curves)[0].tolist(),
            "initial_accuracy": float(curves[:, 0].mean()),
            "final_accuracy": {"per_seed": dict(zip(map(str, seeds), final.tolist())), "mean": float(m[0])}
            | {"ci95": [float(lo[0]), float(hi[0])]},
            "wall_s": {str(s): per_seed[s][0].get("wall_s") for s in seeds},
            "train_accuracy_slope": float(np.mean([_slope([r["accuracy"] for r in rows[s]]) for s in seeds])),
        }
        from prm_jax.rl_loop import PROCESS_KEYS

        key = next((k for k in PROCESS_KEYS if k in rows[seeds[0]][0]), None)
        if key:
            f["process_reward"] = key
            f["process_reward_slope"] = float(np.mean([_slope([r[key] for r in rows[s]]) for s in seeds]))
            f["heldout_change"] = float((curves[:, -1] - curves[:, 0]).mean())
        if base is not None and source != BASELINE:
            d = final - base_final
            dm, dlo, dhi = _t_band(d[:, None])
            f["gain_over_outcome"] = {"per_seed": dict(zip(map(str, seeds), d.tolist())), "mean": float(dm[0])} | {
                "ci95": [float(dlo[0]), float(dhi[0])]
            }
            target = float(base_curve[:, -1].mean())
            mean_curve = curves.mean(0)
            reach = next((x for x, a in zip(xs, mean_curve) if a >= target), None)
            f["samples_to_outcome_final"] = reach
            f["sample_efficiency_vs_outcome"] = (xs[-1] / reach) if reach else None
        out["sources"][source] = f
    out["claims"] = _claims(out["sources"])
    return out


def _claims(src: dict) -> list[dict]:
    """Returns each paper's claim beside what was measured, and whether it holds here."""
    out = []
    for name, ratio_needed, gain_needed in (("prime", 2.5, 0.0), ("pav", 5.0, 0.06)):
        if name not in src or "gain_over_outcome" not in src[name]:
            continue
        f = src[name]
        eff, gain = f["sample_efficiency_vs_outcome"], f["gain_over_outcome"]
        holds = eff is not None and eff >= ratio_needed and gain["ci95"][0] > gain_needed
        eff_txt = f"{eff:.2f}x" if eff else "never reached outcome's final accuracy"
        measured = f"sample efficiency {eff_txt}; final accuracy {_ci(gain, '+')} vs outcome (95% CI)"
        out.append({"source": name, "claim": CLAIMS[name], "measured": measured, "holds": bool(holds)})
    for name in ("prm_sum", "prm_min"):
        if name not in src or "process_reward_slope" not in src[name]:
            continue
        f = src[name]
        hacked = f["process_reward_slope"] > 0 and f["heldout_change"] < 0
        measured = (
            f"PRM reward slope {f['process_reward_slope']:+.4f}/iteration, held-out accuracy change "
            f"{f['heldout_change']:+.3f} ({'the hacking signature' if hacked else 'no hacking signature'})"
        )
        holds = hacked if name == "prm_sum" else not hacked
        out.append({"source": name, "claim": CLAIMS[name], "measured": measured, "holds": bool(holds)})
    return out


def plot(runs: dict, seeds: Sequence[int], path: str, caption: str) -> str:
    """Writes four panels against samples seen, mean over seeds with its 95% band: held-out accuracy
    gained over the SFT policy, held-out accuracy minus outcome-only's (both paired by seed: a seed's
    held-out set is shared by its sources), the frozen PRM's reward (PURE's sources) and the training
    batches' accuracy."""
    from prm_jax import plots

    plt = plots.plt
    seeds = [int(s) for s in seeds]
    fig, grid = plt.subplots(2, 2, figsize=(12.5, 8.2))
    ax_gain, ax_diff, ax_prm, ax_train = grid.ravel()
    acc = {src: np.array([[a for _, a in per[s][0]["curve"]] for s in seeds]) for src, per in runs.items()}

    def band(ax, x, y_SxK, colour, label=None, marker=None):
        m, lo, hi = _t_band(y_SxK)
        marker = marker or ("o" if len(x) < 3 else None)  # a line of one point draws nothing
        ax.plot(x, m, color=colour, marker=marker, ms=4, label=label)
        ax.fill_between(x, lo, hi, color=colour, alpha=0.13, lw=0)

    for source, per_seed in runs.items():
        colour, marker = plots._family_style("rl_" + source)
        xs = np.array([x for x, _ in per_seed[seeds[0]][0]["curve"]])
        band(ax_gain, xs, acc[source] - acc[source][:, :1], colour, source, marker)
        if BASELINE in acc and source != BASELINE:
            band(ax_diff, xs, acc[source] - acc[BASELINE], colour, source, marker)
        rows = [per_seed[s][1] for s in seeds]
        it_x = np.array([r["samples_seen"] for r in rows[0]])
        train = np.array([[r["accuracy"] for r in rs] for rs in rows])
        k = min(5, train.shape[1])  # a 5-iteration moving average: one batch is 64 samples
        band(ax_train, it_x[k - 1 :], np.array([np.convolve(a, np.ones(k) / k, mode="valid") for a in train]), colour)
        if source in ("prm_sum", "prm_min"):
            band(ax_prm, it_x, np.array([[r["prm_reward"] for r in rs] for rs in rows]), colour)
    ax_diff.axhline(0.0, color=plots._family_style("rl_" + BASELINE)[0], lw=1.2, ls="--")
    labels = (
        (ax_gain, "held-out accuracy gained over the SFT policy", "accuracy - accuracy at 0"),
        (ax_diff, "held-out accuracy minus outcome-only's (dashed: outcome)", "accuracy difference"),
        (ax_prm, "frozen PRM's reward per solution (PURE's sum / min credit)", "sum of credited step rewards"),
        (ax_train, f"training-batch accuracy ({k}-iteration mean)", "accuracy"),
    )
    for ax, title, ylabel in labels:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("solutions sampled for training")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    if not ax_prm.lines:
        ax_prm.text(0.5, 0.5, "no PRM source in this comparison", ha="center", transform=ax_prm.transAxes)
    handles, names = ax_gain.get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", frameon=False, fontsize=9, title="reward source")
    fig.suptitle("\n".join(textwrap.wrap(caption, 130)), fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 0.95))
    plots._save(fig, path)
    return path


def write_report(workdir: str, sources: Sequence[str], seeds: Sequence[int]) -> dict:
    """Writes WORKDIR/report.md, report.json and rl_curves.png of finished runs; returns the figures."""
    runs = load(workdir, sources, seeds)
    figs = figures(runs, seeds)
    first = runs[sources[0]][int(seeds[0])][0]
    n_eval = first.get("eval_problems")
    spread = (
        f"mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) with Student-t 95% bands"
        if len(seeds) > 1
        else f"one seed ({seeds[0]}): no bands"
    )
    caption = spread + (f"; {n_eval} held-out problems per seed" if n_eval else "")
    caption += "; every source trains on the same problems (drawn from the seed and the iteration)"
    figs["png"] = plot(runs, seeds, os.path.join(workdir, "rl_curves.png"), caption)
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(jsonio.sanitize(figs), f, indent=1)  # one seed's missing bounds as null
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(markdown(figs, caption))
    return figs


def _ci(v: dict, sign: str = "") -> str:
    if not np.isfinite(v["ci95"][0]):
        return f"{v['mean']:{sign}.3f} (1 seed: no CI)"
    return f"{v['mean']:{sign}.3f} [{v['ci95'][0]:{sign}.3f}, {v['ci95'][1]:{sign}.3f}]"


def markdown(figs: dict, caption: str) -> str:
    """Returns the comparison as markdown: per-seed and mean figures, then the papers' claims."""
    seeds = [str(s) for s in figs["seeds"]]
    lines = [
        "# RL with PRM rewards on the arithmetic task",
        "",
        f"Held-out accuracy after RL from the demo's SFT policy, {caption}. ![curves](rl_curves.png)",
        "",
        "| source | start | " + " | ".join(f"seed {s}" for s in seeds) + " | mean [95% CI] | vs outcome [95% CI] "
        "| samples to outcome's final | efficiency | wall s / seed |",
        "|---" * (len(seeds) + 7) + "|",
    ]
    for name, f in figs["sources"].items():
        fa = f["final_accuracy"]
        gain = _ci(f["gain_over_outcome"], "+") if "gain_over_outcome" in f else "-"
        reach = f.get("samples_to_outcome_final", "-") if name != BASELINE else "-"
        eff = f.get("sample_efficiency_vs_outcome")
        eff = f"{eff:.2f}x" if eff else ("-" if name == BASELINE else "not reached")
        walls = [w for w in f["wall_s"].values() if w is not None]
        lines.append(
            f"| {name} | {f['initial_accuracy']:.3f} | "
            + " | ".join(f"{fa['per_seed'][s]:.3f}" for s in seeds)
            + f" | {_ci(fa)} | {gain} | {reach if reach is not None else 'not reached'} | {eff} | "
            + (f"{np.mean(walls):.0f}" if walls else "-")
            + " |"
        )
    per_seed = {s: [f["wall_s"].get(s) for f in figs["sources"].values()] for s in seeds}
    walls = [sum(w) for w in per_seed.values() if all(x is not None for x in w)]
    if walls:
        lines += ["", f"Wall time of one seed, all sources in turn: {', '.join(f'{w:.0f} s' for w in walls)}."]
    lines += ["", "## The papers' claims beside this run", "", "| claim | measured here | holds |", "|---|---|---|"]
    for c in figs["claims"]:
        lines.append(f"| {c['claim']} | {c['measured']} | {'yes' if c['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"
