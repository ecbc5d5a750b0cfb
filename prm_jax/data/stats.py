"""Dataset statistics: step and label counts, first-error histogram, token-length percentiles."""

from __future__ import annotations

import collections
from typing import Iterable

import numpy as np

from prm_jax.data import tokenize
from prm_jax.data.records import Record


def record_stats(
    records: Iterable[Record], tokenizer, *, marker: str, chat_template: str | None = None, progress: bool = False
) -> dict:
    """Returns a JSON-able dict of counts over `records` and token lengths of their rendered form."""
    n = steps = pos = neg = unl = soft = labelled = with_error = blank = 0
    outcome = collections.Counter()
    first = collections.Counter()
    lengths, nsteps = [], []
    sources = collections.Counter()
    alt, alt_first = 0, collections.Counter()  # prefix + alternative-step records (PRM800K)
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="stats", unit="rec", leave=False)
    for r in it:
        n += 1
        sources[r.source] += 1
        steps += len(r.steps)
        blank += sum(1 for st in r.steps if not st.strip())
        nsteps.append(len(r.steps))
        for lab in r.step_labels or [None] * len(r.steps):
            if lab is None:
                unl += 1
            else:
                pos += lab >= 0.5
                neg += lab < 0.5
                soft += 0.0 < lab < 1.0
        fe = r.first_error()
        if fe is not None:
            labelled += 1
            if fe >= 0:
                with_error += 1
                first[fe] += 1
                if r.meta.get("alternative"):
                    alt_first[fe] += 1
        alt += bool(r.meta.get("alternative"))
        outcome["unlabelled" if r.outcome is None else ("positive" if r.outcome >= 0.5 else "negative")] += 1
        ids = tokenize.encode_prefix(r.problem, r.steps, tokenizer, marker=marker, chat_template=chat_template)
        lengths.append(len(ids))
    lengths_a = np.asarray(lengths or [0])
    return {
        "examples": n,
        "steps": steps,
        "steps_per_example": {"mean": round(float(np.mean(nsteps or [0])), 3), "max": int(max(nsteps or [0]))},
        "positive_steps": int(pos),
        "negative_steps": int(neg),
        "unlabelled_steps": int(unl),
        "whitespace_only_steps": int(blank),  # kept (a step of nothing but its marker), counted here
        "soft_label_steps": int(soft),
        "examples_with_step_labels": labelled,
        "examples_with_error": with_error,
        "examples_all_correct": labelled - with_error,
        "first_error_histogram": {str(k): first[k] for k in sorted(first)},
        "outcome": dict(outcome),
        **(
            {
                "alternative_step_examples": alt,
                "main_path_first_error_histogram": {
                    str(k): first[k] - alt_first[k] for k in sorted(first) if first[k] - alt_first[k]
                },
            }
            if alt
            else {}
        ),
        "sources": dict(sources),
        "token_length": {
            **{f"p{q}": int(np.percentile(lengths_a, q)) for q in (50, 90, 95, 99)},
            "max": int(lengths_a.max()),
            "mean": round(float(lengths_a.mean()), 1),
        },
    }
