"""The demo policy's accuracy after more or fewer SFT steps: is a seed's policy past the look-up transition?

Before the transition (`prm_jax/configs/demo.py`) the policy is right mostly by luck: its right answers
come from wrong steps, its errors are confident, and no verifier separates its steps. For each
`--steps` the script trains the demo's policy config (seed `--seed`, `policy.train.steps` overridden)
into OUT/steps_S/policy, samples `--samples` solutions of `--problems` held-out problems (the demo's
held-out draw) and prints the share that is right, the share of right answers with a wrong step
(`labeling.sample_outcomes`' own figures), and the shares of solutions whose first wrong step is of each
`arith.step_faults` kind ('value' is a wrong look-up: the sign of a policy before the transition). Any
`--config.KEY=VALUE` overrides the demo config, as for `prm-jax demo`. A policy folder that is already
DONE is reused, so give each setting its own --out.

    python benchmarks/policy_steps.py --seed 7 --steps 1100,1500 --out runs/policy_steps_s7
    python benchmarks/policy_steps.py --seed 5 --out runs/ps_lr_s5 --config.policy.optim.lr=0.005
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import jax

from prm_jax import config as config_lib
from prm_jax import demo, jsonio, labeling, sampling
from prm_jax.configs import demo as demo_config
from prm_jax.data import arith


def parse_steps(text: str) -> list[int]:
    """Returns the SFT step counts of a comma-separated list; each must be a positive integer."""
    try:
        steps = [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: --steps {text!r}: give positive integers, comma-separated") from None
    if not steps or min(steps) < 1:
        raise SystemExit(f"error: --steps {text!r}: give positive integers, comma-separated")
    return steps


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="the demo's --config.seed")
    p.add_argument("--steps", default="1100", help="SFT step counts, comma-separated")
    p.add_argument("--out", required=True, help="folder for the policies and results.json")
    p.add_argument("--problems", type=int, default=256, help="held-out problems (the demo's draw)")
    p.add_argument("--samples", type=int, default=4, help="solutions per problem")
    p.add_argument("--variant", choices=("full", "quick"), default="full", help="the demo config's variant")
    a, overrides = p.parse_known_args(argv)
    if any(o.lstrip("-").startswith("config.seed=") for o in overrides):
        raise SystemExit("error: give the seed as --seed N; --config.seed would be overwritten by it")
    steps = parse_steps(a.steps)
    c = demo_config.get_config(a.variant)
    try:
        config_lib.apply_overrides(c, overrides)
    except (KeyError, ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None
    c.seed = a.seed
    probs = demo.held_out_problems(c, a.problems)
    results = {}
    for n in steps:
        c.policy.train.steps = n
        wd = os.path.join(a.out, f"steps_{n}")
        reused = os.path.exists(os.path.join(wd, "policy", "DONE"))  # then no SFT time to report
        t0 = time.perf_counter()
        demo.stage_policy(wd, c, print)
        train_s = time.perf_counter() - t0
        pol = sampling.load_policy(os.path.join(wd, "policy"), max_batch=c.sample_batch)
        recs, stats = labeling.sample_outcomes(
            pol,
            probs,
            jax.random.PRNGKey(2000 + a.seed),
            samples=a.samples,
            solution_tokens=c.search.max_new_tokens,
            grade=arith.is_correct,
            step_truth=arith.check_steps,
        )
        jsonio.write_jsonl(os.path.join(wd, "samples.jsonl"), recs)
        kinds = collections.Counter(arith.first_error_kind(r["prompt"], r["steps"]) for r in recs)
        results[n] = {
            "sft_seconds": train_s,
            "right": stats["outcome_accuracy"],
            "right_with_wrong_step": stats.get("outcome_right_with_wrong_step"),
            "solutions": stats["outcome_solutions"],
            "first_error": {k: kinds[k] / len(recs) for k in sorted(kinds, key=str) if k is not None},
        }
        r = results[n]
        lucky = "n/a" if r["right_with_wrong_step"] is None else f"{r['right_with_wrong_step']:.3f}"
        sft = "reused" if reused else f"{train_s:.0f}s"
        errs = ", ".join(f"{k} {v:.3f}" for k, v in r["first_error"].items())
        print(
            f"RESULT seed {a.seed} steps {n}: SFT {sft}, right {r['right']:.3f}, right with a wrong step {lucky}; "
            f"first error {errs}"
        )
    jsonio.dump({"seed": a.seed, "results": results}, os.path.join(a.out, "results.json"))
    return results


if __name__ == "__main__":
    main()
