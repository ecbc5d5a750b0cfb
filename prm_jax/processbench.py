"""ProcessBench with any PRM `Verifier` (prm-jax's, a public family's, an implicit PRM): score every split, choose the threshold, predict first errors.

The metric itself (accuracy on erroneous / correct cases, F1; identical to the official code) is in
`evaluate.py`; this module runs the model (`verifier.score_step_probs`), for `prm-jax evaluate
processbench` and notebooks alike.
"""

from __future__ import annotations

import numpy as np

from prm_jax import evaluate, verifier


def run_processbench(
    ver: verifier.Verifier,
    splits: dict,
    *,
    batch_size: int,
    threshold: float | None = None,
    pick_threshold_on: str | None = None,
    progress: bool = True,
) -> dict:
    """Returns ProcessBench results of the Verifier on `splits` ({name: Records}): the threshold
    (given, default 0.5, or the best-F1 one on split `pick_threshold_on`), per-split and average
    metrics with each split's count of cases whose trailing steps the verifier's max_len cut (unscored steps
    cannot be predicted wrong), and every case's prediction and step probabilities."""
    if pick_threshold_on is not None and pick_threshold_on not in splits:
        raise ValueError(f"pick_threshold_on {pick_threshold_on!r} is not one of the splits {list(splits)}")
    probs, labels, truncated = {}, {}, {}
    for name, records in splits.items():
        probs[name], truncated[name] = verifier.score_step_probs(ver, records, batch_size=batch_size, progress=progress)
        labels[name] = np.asarray([r.first_error() for r in records], np.int64)
    if pick_threshold_on is not None:
        s = pick_threshold_on
        threshold, source = evaluate.pick_threshold(probs[s], labels[s]), f"best F1 on {s}"
    else:
        source = "default" if threshold is None else "given"
        threshold = 0.5 if threshold is None else threshold
    per_split, predictions = {}, {}
    for name, records in splits.items():
        pred = evaluate.predict_first_error(probs[name], threshold)
        per_split[name] = (pred, labels[name])
        predictions[name] = [
            {"id": r.id, "label": int(lab), "pred": int(p), "step_probs": [round(float(x), 5) for x in sp]}
            for r, lab, p, sp in zip(records, labels[name], pred, probs[name])
        ]
    results = evaluate.processbench_summary(per_split)
    for name in splits:
        results[name]["truncated"] = truncated[name]
    return {"threshold": threshold, "threshold_source": source, "results": results, "predictions": predictions}
