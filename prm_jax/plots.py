"""Matplotlib figures (Agg backend, PNG): accuracy against N and against compute per method, and one
solution's step scores."""

from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402


# Line style by selection rule (the name's last part), colour and marker by verifier (its first part).
_STYLES = {"argmax": "-", "weighted_vote": "--", "majority": ":"}
_POINT_MARKERS = ("*", "D", "P", "X", "s")
_FAMILY_MARKERS = ("o", "s", "^", "v", "D", "<", ">", "p", "h")

# Label-free baselines (drawn as a wide pale line under the trained verifiers).
BASELINES = ("likelihood", "base_likelihood")


_COLOURS = [c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if matplotlib.colors.to_hex(c) != "#7f7f7f"]
_FIXED = {"majority": ("k", "s"), "oracle": ("0.55", "o")}  # grey is the oracle's alone
_FAMILIES: list[str] = []  # families in first-seen order, process-wide: one colour per verifier in every figure


def _family_style(family: str) -> tuple:
    """Returns (colour, marker) of a verifier family, the same in every figure of the process."""
    if family in _FIXED:
        return _FIXED[family]
    if family not in _FAMILIES:
        _FAMILIES.append(family)
    i = _FAMILIES.index(family)
    return _COLOURS[i % len(_COLOURS)], _FAMILY_MARKERS[i % len(_FAMILY_MARKERS)]


def _draw(ax, curves: dict, bands, dodge: float) -> list:
    """Draws curves (lines) and one-point methods (markers with error bars) on ax; returns the x values.

    Line series are spread sideways by `dodge` octaves each around their x (a log2 axis), so methods
    whose accuracies coincide stay visible side by side instead of hiding each other.
    """
    xs_all, points = [], 0
    lines = [k for k, c in curves.items() if np.size(c[0]) > 1]
    singles = [k for k in curves if k not in lines]
    for name, c in curves.items():
        ns, acc, lo, hi = (np.asarray(a, np.float64) for a in c[:4])  # an evaluate.Curve has per_problem after
        if not (ns.shape == acc.shape == lo.shape == hi.shape):
            raise ValueError(f"curve {name!r}: ns, acc, lo, hi must have the same length")
        family = name.split("/")[0]
        colour, marker = _family_style(family.removeprefix("beam_"))  # a beam search: its ranker's colour
        xs_all += ns.tolist()
        if ns.size == 1:
            # searches measured at the same budget are nudged apart (3 dodges: their 9-point markers
            # and error bars would otherwise cover each other)
            ax.errorbar(
                ns * 2.0 ** (3 * dodge * (singles.index(name) - (len(singles) - 1) / 2)),
                acc,
                yerr=[acc - lo, hi - acc],
                fmt=_POINT_MARKERS[points % len(_POINT_MARKERS)],
                ms=9,
                color=colour,
                capsize=3,
                lw=1.2,
                label=name,
                zorder=4,
            )
            points += 1
            continue
        x = ns * 2.0 ** (dodge * (lines.index(name) - (len(lines) - 1) / 2))
        style = ":" if family in ("majority", "oracle") else _STYLES.get(name.split("/")[-1], "-")
        if family in BASELINES:  # a wide pale band under the others: curves that match it stay visible
            ax.plot(x, acc, lw=6, alpha=0.35, color=colour, label=name, zorder=1, solid_capstyle="round")
        else:
            ax.plot(x, acc, marker=marker, ms=4.5, lw=1.5, ls=style, color=colour, label=name, zorder=3)
        if bands is None or name in bands:
            ax.fill_between(x, lo, hi, color=colour, alpha=0.12, lw=0)
    return xs_all


def _finish(fig, ax, path, title, caption, xlabel, ylabel) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    lo, hi = ax.get_ylim()
    if hi - lo < 0.1:  # all methods (nearly) equal: a readable range around them, not a zoom into noise
        mid = (lo + hi) / 2
        ax.set_ylim(mid - 0.1, mid + 0.1)
    text = title if caption is None else title + "\n" + "\n".join(textwrap.wrap(caption, 95))
    ax.set_title(text, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, path)


def plot_accuracy_vs_n(
    curves: dict,
    path: str,
    title: str = "Best-of-N accuracy",
    ylabel: str = "accuracy",
    caption: str | None = None,
    bands=None,
    xlabel: str = "N (solutions per problem)",
    dodge: float = 0.03,
) -> str:
    """Returns path after writing a PNG: accuracy against N (log2 axis) per method, with CI bands.

    curves maps a method name (`verifier/aggregation/rule`, or one word such as `majority`) to
    (ns, acc, lo, hi) (an `evaluate.Curve` works). A method measured once (beam search) is a marker
    with an error bar at the x it is given (e.g. the N whose best-of-N generates as many tokens, which
    need not be a power of two); line series are dodged sideways (`dodge` octaves apart) so equal
    curves stay visible; colour and marker by verifier, line style by selection rule; the legend
    sits outside the axes; `caption` (the CI level, the number of problems) goes under the title.
    `bands` names the curves that get a CI band (default: all).
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_n needs at least one curve")
    fig, ax = plt.subplots(figsize=(8.8, 4.8), dpi=120)
    xs = _draw(ax, curves, bands, dodge)
    ax.set_xscale("log", base=2)
    ticks = sorted({int(round(x)) for x in xs if abs(x - round(x)) < 1e-9})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    _finish(fig, ax, path, title, caption, xlabel, ylabel)
    return path


def plot_accuracy_vs_compute(
    curves: dict,
    path: str,
    title: str = "Accuracy at equal compute",
    ylabel: str = "accuracy",
    caption: str | None = None,
    bands=None,
    xlabel: str = "tokens per problem (generated + verifier)",
) -> str:
    """Returns path after writing a PNG: accuracy against compute per problem (log2 axis).

    curves: {name: (tokens, acc, lo, hi)}, a best-of-N curve at each N's tokens, a search at its
    measured tokens (one point); drawn as `plot_accuracy_vs_n` draws them, without dodging.
    """
    if not curves:
        raise ValueError("plot_accuracy_vs_compute needs at least one curve")
    fig, ax = plt.subplots(figsize=(8.8, 4.8), dpi=120)
    _draw(ax, curves, bands, 0.0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _finish(fig, ax, path, title, caption, xlabel, ylabel)
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
    if labels is not None:  # only the classes this solution has
        kinds = {
            "#55A868": "step correct (ground truth)",
            "#C44E52": "step wrong (ground truth)",
            "#999999": "no label",
        }
        handles += [Patch(color=c, label=t) for c, t in kinds.items() if c in colors]
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
    ax.set_title("\n".join(textwrap.wrap(title, int(8 * fig.get_figwidth()))), fontsize=9, loc="left")
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
