"""The implicit PRM's per-token log-ratio log pi/pi_ref on held-out samples, by the reference's probability.

The implicit PRM's step reward is beta times a sum of these ratios. The script prints, per bin of the
reference's probability for the token, the share of step tokens and the ratio's mean and spread. That
is where a best-of-N argmax finds its noisiest scores. The samples are 256 held-out problems x 16
(the demo's held-out draw, other sampling keys). It needs a finished demo run:

    python benchmarks/implicit_log_ratio.py --workdir runs/demo --seed 0
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from prm_jax import demo, objectives, sampling, search, shapes
from prm_jax.configs import demo as demo_config
from prm_jax.data import tokenize

BINS = ((0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 0.9), (0.9, 1.01))


def log_ratios(verifier, problems, solutions) -> tuple[np.ndarray, np.ndarray]:
    """Returns (log pi/pi_ref, log pi_ref) of every step token of the solutions (flat arrays)."""
    exs = [verifier._encode(p, x.steps) for p, xs in zip(problems, solutions) for x in xs if x.steps]
    ratio, ref = [], []
    for s in range(0, len(exs), 64):
        chunk = exs[s : s + 64]
        seq = shapes.multiple(max(len(e["tokens"]) for e in chunk), 64)
        t = shapes.pow2(max(len(e["step_pos"]) for e in chunk), 4)
        b = tokenize.pad_batch(chunk, seq, t, pad_id=verifier.tokenizer.pad_id)
        rows = {k: b[k] for k in ("tokens", "positions", "segment_ids")}
        lp, _ = objectives.token_logprobs(verifier.cfg, verifier.params, rows, chunk_size=verifier.logprob_chunk)
        rp, _ = objectives.token_logprobs(verifier.cfg, verifier.ref_params, rows, chunk_size=verifier.logprob_chunk)
        step = np.asarray(b["step_ids"]) >= 0  # the tokens the step rewards sum over
        ratio.append((np.asarray(lp) - np.asarray(rp))[step])
        ref.append(np.asarray(rp)[step])
    return np.concatenate(ratio), np.concatenate(ref)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/demo", help="a finished demo run (its policy and implicit PRM)")
    p.add_argument("--seed", type=int, default=0, help="the demo run's --config.seed")
    a = p.parse_args()
    c = demo_config.get_config("full")
    policy = sampling.load_policy(os.path.join(a.workdir, "policy"), max_batch=c.sample_batch)
    problems = demo._problems(c.task, a.seed + 2, c.search.problems)
    sols = search.sample_solutions(
        policy, problems, c.search.n, jax.random.PRNGKey(2000 + a.seed), max_new_tokens=c.search.max_new_tokens
    )
    ratio, ref = log_ratios(demo.load_verifiers(a.workdir, ["implicit"])["implicit"], problems, sols)
    prob = np.exp(ref)
    print(f"seed {a.seed}: {ratio.size} step tokens of {sum(len(xs) for xs in sols)} solutions")
    print("reference p      share   log-ratio mean   sd      mean |.|")
    for lo, hi in BINS:
        m = (prob >= lo) & (prob < hi)
        if m.any():
            r = ratio[m]
            print(
                f"[{lo:.2f}, {min(hi, 1):.2f})     {m.mean():.3f}   {r.mean():+.3f}           {r.std():.3f}   {np.abs(r).mean():.3f}"
            )


if __name__ == "__main__":
    main()
