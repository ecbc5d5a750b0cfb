"""Matplotlib figures (Agg backend, PNG): accuracy against N per method, and one solution's step scores."""

from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


# Line style by selection rule (the name's last part), colour by verifier (its first part).
_STYLES = {"argmax": "-", "weighted_vote": "--", "majority": ":"}
_POINT_MARKERS = ("*", "D", "P", "X", "s")
# Marker by aggregation (the middle part), so two aggregations of one verifier stay apart.
_AGG_MARKERS = {"min": "o", "last": "s", "prod": "^", "mean": "v", "pure": "D", "softmin": "D", "sum": "<"}


# Label-free baselines (drawn as a wide pale line under the trained verifiers).
BASELINES = ("likelihood",)


def plot_accuracy_vs_n(
    curves: dict,
    path: str,
    title: str = "Best-of-N accuracy",
    ylabel: str = "accuracy",
    caption: str | None = None,
    bands=None,
) -> str:
    """Returns path after writing a PNG: accuracy against N (log2 axis) per method, with CI bands.

    curves maps a method name (`verifier/aggregation/rule`, or one word such as `majority`) to
    (ns, acc, lo, hi) (an `evaluate.Curve` works). A method measured at one N only (beam search) is a
    marker with an error bar, not a line; the legend sits outside the axes; `caption` (e.g. the CI
    level and the number of problems) is written under the title. `bands` names the curves that get
    a CI band (default: all); more than three overlapping bands hide each other.
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_n needs at least one curve")
    fig, ax = plt.subplots(figsize=(8.6, 4.6), dpi=120)
    all_ns, colours, points = set(), {}, 0
    # grey is the oracle's: the other methods take the remaining colours
    cycle = [c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if matplotlib.colors.to_hex(c) != "#7f7f7f"]
    for name, (ns, acc, lo, hi) in curves.items():
        ns, acc, lo, hi = (np.asarray(a, np.float64) for a in (ns, acc, lo, hi))
        if not (ns.shape == acc.shape == lo.shape == hi.shape):
            raise ValueError(f"curve {name!r}: ns, acc, lo, hi must have the same length")
        family = name.split("/")[0]
        colour = {"majority": "k", "oracle": "0.55"}.get(family) or colours.setdefault(
            family, cycle[len(colours) % len(cycle)]
        )
        if ns.size == 1:
            # nudged right of the curves' last point (log axis: a factor), one step per method
            ax.errorbar(
                ns * 1.07 ** (points + 1),
                acc,
                yerr=[acc - lo, hi - acc],
                fmt=_POINT_MARKERS[points % len(_POINT_MARKERS)],
                ms=9,
                color=colour,
                capsize=3,
                lw=1.2,
                label=name,
                zorder=3,
            )
            points += 1
        else:
            style = ":" if family in ("majority", "oracle") else _STYLES.get(name.split("/")[-1], "-")
            parts = name.split("/")
            marker = _AGG_MARKERS.get(parts[1], "o") if len(parts) == 3 else "o"
            if family in BASELINES:  # a wide pale band under the others: curves that match it stay visible
                ax.plot(ns, acc, lw=6, alpha=0.35, color=colour, label=name, zorder=1, solid_capstyle="round")
            else:
                ax.plot(ns, acc, marker=marker, ms=4, lw=1.6, ls=style, color=colour, label=name)
            if bands is None or name in bands:
                ax.fill_between(ns, lo, hi, color=colour, alpha=0.12, lw=0)
        all_ns.update(int(n) for n in ns)
    ax.set_xscale("log", base=2)
    ticks = sorted(all_ns)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlabel("N (solutions per problem; beams: N beams)")
    ax.set_ylabel(ylabel)
    ax.set_title(title if caption is None else f"{title}\n{caption}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_step_scores(
    steps: list, scores, labels=None, path: str = "steps.png", title: str = "Step scores", threshold: float | None = 0.5
) -> str:
    """Returns path after writing a PNG: one solution's per-step scores as bars, each step's text as
    its label.

    labels (optional, per step: 1 correct, 0 wrong, None unknown) colour the bars: green correct,
    red wrong, grey unknown; without labels all bars are blue. The dashed line is the threshold
    under which a step is predicted wrong (the ProcessBench read-out).
    """
    scores = np.asarray(scores, np.float64)
    if len(steps) != scores.size:
        raise ValueError(f"{len(steps)} steps but {scores.size} scores")
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
    n = len(steps)
    texts = [
        f"{i}: " + textwrap.shorten(" ".join(str(t).split()), width=60, placeholder=" ...") for i, t in enumerate(steps)
    ]
    fig, ax = plt.subplots(figsize=(4.5 + 0.065 * max(len(t) for t in texts), 0.5 * n + 1.8), dpi=120)
    y = np.arange(n)
    if labels is None:
        colors = ["#4C72B0"] * n
    else:
        colors = ["#999999" if l is None else ("#55A868" if l >= 0.5 else "#C44E52") for l in labels]
    ax.barh(y, scores, color=colors, height=0.6)
    for yi, s in zip(y, scores):
        ax.text(s, yi, f" {s:.2f}", va="center", fontsize=8)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    if labels is not None:
        handles += [
            Patch(color="#55A868", label="step correct (exact)"),
            Patch(color="#C44E52", label="step wrong (exact)"),
            Patch(color="#999999", label="no label"),
        ]
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=0.8)
        handles.append(
            Line2D([], [], color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}: below = predicted wrong")
        )
    lo, hi = min(0.0, scores.min()), max(1.0, scores.max())
    ax.set_xlim(lo, hi + 0.15 * (hi - lo))
    ax.set_xlabel("verifier score (P(step correct))")
    ax.set_yticks(y)
    ax.set_yticklabels(texts, fontsize=8, family="monospace")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_ylim(n - 0.5, -0.5)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
