"""Matplotlib figures (Agg backend, PNG): accuracy against N per method, and one solution's step scores."""
from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_accuracy_vs_n(curves: dict, path: str, title: str = "Best-of-N accuracy", ylabel: str = "accuracy") -> str:
    """Returns path after writing a PNG: accuracy against N (log2 axis) per method, with CI bands.

    curves maps a method name to (ns, acc, lo, hi) (an `evaluate.Curve` works).
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_n needs at least one curve")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    all_ns = set()
    for name, (ns, acc, lo, hi) in curves.items():
        ns, acc, lo, hi = (np.asarray(a, np.float64) for a in (ns, acc, lo, hi))
        if not (ns.shape == acc.shape == lo.shape == hi.shape):
            raise ValueError(f"curve {name!r}: ns, acc, lo, hi must have the same length")
        line, = ax.plot(ns, acc, marker="o", ms=4, lw=1.8, label=name)
        ax.fill_between(ns, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        all_ns.update(int(n) for n in ns)
    ax.set_xscale("log", base=2)
    ticks = sorted(all_ns)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlabel("N (solutions per problem)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_step_scores(steps: list, scores, labels=None, path: str = "steps.png", title: str = "Step scores",
                     threshold: float | None = 0.5) -> str:
    """Returns path after writing a PNG: one solution's per-step scores as bars, step text alongside.

    labels (optional, per step: 1 correct, 0 wrong, None unknown) colour the bars: green correct,
    red wrong, grey unknown; without labels all bars are blue.
    """
    scores = np.asarray(scores, np.float64)
    if len(steps) != scores.size:
        raise ValueError(f"{len(steps)} steps but {scores.size} scores")
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
    n = len(steps)
    fig, (ax_t, ax) = plt.subplots(1, 2, figsize=(10, 0.55 * n + 1.6), dpi=120,
                                   gridspec_kw={"width_ratios": [2.2, 1]}, sharey=True)
    y = np.arange(n)
    if labels is None:
        colors = ["#4C72B0"] * n
    else:
        colors = ["#999999" if l is None else ("#55A868" if l >= 0.5 else "#C44E52") for l in labels]
    ax.barh(y, scores, color=colors, height=0.6)
    for yi, s in zip(y, scores):
        ax.text(s, yi, f" {s:.2f}", va="center", fontsize=8)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=0.8)
    lo, hi = min(0.0, scores.min()), max(1.0, scores.max())
    ax.set_xlim(lo, hi + 0.15 * (hi - lo))
    ax.set_xlabel("score")
    ax.grid(True, axis="x", alpha=0.3)
    ax_t.set_xlim(0, 1)
    ax_t.axis("off")
    for yi, text in zip(y, steps):
        short = textwrap.shorten(" ".join(str(text).split()), width=90, placeholder=" ...")
        ax_t.text(0, yi, f"{yi}: {short}", va="center", fontsize=8, family="monospace")
    ax.set_ylim(n - 0.5, -0.5)
    if labels is not None:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="#55A868", label="correct"), Patch(color="#C44E52", label="wrong"),
                           Patch(color="#999999", label="unknown")], fontsize=7, loc="lower right", frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
