"""The implicit PRM's per-token log-ratio log pi/pi_ref, by the reference's probability, and its step rewards, by the step's truth.

The implicit PRM's step reward is beta times a sum of these ratios. The script prints, per bin of the
reference's probability for the token, the share of step tokens and the ratio's mean and spread. That
is where a best-of-N argmax finds its noisiest scores. It then prints the step rewards of the steps the
task marks right and of those it marks wrong (`arith.check_steps`): a right step the reference already
draws with probability ~1 can gain at most -beta * log p_ref ~ 0, so the wrong steps pushed above 0
are the ones an argmax over min step rewards can prefer to a right solution. The samples are 256
problems x 16 (`--score-on`: the demo's held-out draw, or a validation draw no demo stage uses; other
sampling keys). It needs a finished demo run:

    python benchmarks/implicit_log_ratio.py --workdir runs/demo --seed 0 --score-on validation
"""

from __future__ import annotations

import argparse
import os

import common
import jax
import numpy as np

from prm_jax import demo, objectives, sampling, search, shapes
from prm_jax.configs import demo as demo_config
from prm_jax.data import arith, tokenize

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


def step_rewards_by_truth(verifier, problems, solutions) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rewards of the right steps, rewards of the wrong steps): the implicit verifier's step
    rewards r_t of every step of the solutions, split by `arith.check_steps` (flat arrays)."""
    flat = [(p, x.steps) for p, xs in zip(problems, solutions) for x in xs if x.steps]
    rewards = verifier.score_all([p for p, _ in flat], [s for _, s in flat])["rewards"]
    right, wrong = [], []
    for (p, steps), r in zip(flat, rewards):
        for ok, r_t in zip(arith.check_steps(p, steps), np.asarray(r)):
            (right if ok else wrong).append(float(r_t))
    return np.asarray(right, np.float64), np.asarray(wrong, np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/demo", help="a finished demo run (its policy and implicit PRM)")
    p.add_argument("--seed", type=int, default=0, help="the demo run's --config.seed")
    p.add_argument("--score-on", choices=("held-out", "validation"), default="held-out", help="which problems")
    a = p.parse_args()
    c = demo_config.get_config("full")
    c.seed = a.seed
    policy = sampling.load_policy(os.path.join(a.workdir, "policy"), max_batch=c.sample_batch)
    problems = common.eval_problems(c, a.score_on)
    sols = search.sample_solutions(
        policy, problems, c.search.n, jax.random.PRNGKey(2000 + a.seed), max_new_tokens=c.search.max_new_tokens
    )
    implicit = demo.load_verifiers(a.workdir, ["implicit"])["implicit"]
    ratio, ref = log_ratios(implicit, problems, sols)
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
    right, wrong = step_rewards_by_truth(implicit, problems, sols)
    print("steps   count   reward mean   share > 0.1   share > 0   share < -0.3")
    for name, r in (("right", right), ("wrong", wrong)):
        if r.size:
            print(
                f"{name:6}  {r.size:5d}   {r.mean():+.3f}        {np.mean(r > 0.1):.3f}         "
                f"{np.mean(r > 0):.3f}       {np.mean(r < -0.3):.3f}"
            )


if __name__ == "__main__":
    main()
