"""The RL host loop: `run(stage, workdir)` runs RL iterations with checkpoints, resume and SIGTERM.

An RL run's state is one Orbax checkpoint per saved iteration (`checkpoint.Checkpointer`): the
policy's TrainState and, for PRIME, the online implicit PRM's, with the iteration, the samples seen
and the held-out curve as the data state. Every random choice of iteration `it` (its problems, its
sampling key) is derived from (seed, it), so a resumed run replays the iterations after its
checkpoint as the uninterrupted run would (bit-equal on one machine, tested). SIGTERM inside the
iterations finishes the current one, saves and returns with `preempted`; elsewhere (loading,
compiling) it stops at once, as `loop.run`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from prm_jax import loop, rl

# Settings a resumed RL run may change (its budget and cadence; the constant lr makes the step count free).
RESUME_FREE = ("iterations", "eval.every", "ckpt_every", "keep_ckpts", "train.train.steps", "prime.train.steps")
PROCESS_KEYS = ("prm_reward", "pav_reward", "prime_reward")


def build(c) -> tuple[rl.RL, list]:
    """Returns (the RL agent at the SFT policy, the held-out problems) of an RL stage config."""
    from prm_jax import sampling, train
    from prm_jax.data import arith
    from prm_jax.verifier import load_verifier

    task = arith.ArithConfig(**dict(c.task))
    model_cfg, params, _ = loop.load_trained(c.policy_workdir)
    policy = sampling.load_policy(c.policy_workdir, max_batch=int(c.sample_batch))
    s = train.setup(c.train, model_cfg=model_cfg)
    state = train.init_state(s, params=params, ref_params=params)
    need = {"prm_sum": ("prm",), "prm_min": ("prm",), "pav": ("qpi", "pav")}.get(c.source, ())
    verifiers = {k: load_verifier("score", workdir=c.verifiers[k], tokenizer=policy.tokenizer) for k in need}
    prime = None
    if c.source == "prime":
        ps = train.setup(c.prime, model_cfg=model_cfg)
        prime = (ps, train.init_state(ps, params=params, ref_params=params))
    rw = dict(c.rewards)
    if c.source != "prime":
        rw.pop("beta")
    agent = rl.RL(
        s,
        state,
        policy,
        source=c.source,
        group=int(c.group),
        verifiers=verifiers,
        prime=prime,
        baseline=c.baseline,
        **rw,
    )
    held = np.random.default_rng([int(c.seed), 1])
    return agent, [arith.sample_problem(task, held) for _ in range(int(c.eval.problems))]


def held_out_accuracy(agent: rl.RL, held_out, it: int, max_new_tokens: int) -> float:
    """Returns the policy's accuracy on the held-out problems, one sample each (key fixed by `it`)."""
    from prm_jax import search

    agent.sync_sampler()
    sols = search.sample_solutions(
        agent.policy, [p.text for p in held_out], 1, jax.random.PRNGKey(10_000 + it), max_new_tokens=max_new_tokens
    )
    return float(np.mean([x[0].answer == p.answer for x, p in zip(sols, held_out)]))


def _state(agent: rl.RL) -> dict:
    return {"policy": agent.state} | ({"prime": agent.prime[1]} if agent.prime is not None else {})


def _abstract(agent: rl.RL) -> dict:
    out = {"policy": agent.setup.abstract_state}
    if agent.prime is not None:
        out["prime"] = agent.prime[0].abstract_state
    return out


def run(stage, workdir: str, *, progress: bool = True, allow_config_change: bool = False) -> dict:
    """Runs `stage.iterations` RL iterations from the SFT policy in `stage.policy_workdir` (resuming
    from WORKDIR's latest checkpoint); writes metrics.jsonl and TensorBoard events per iteration and
    final.json; returns {source, seed, curve: [(samples seen, held-out accuracy)], final_eval_accuracy,
    preempted, wall_s}.

    stage (an RL stage config, `experiments/arith_rl.py`; not a training config): seed, source, policy_workdir, verifiers
    {name: workdir}, iterations, problems_per_iteration, group, sample_batch, max_new_tokens,
    temperature, baseline, rewards (outcome_coef, process_coef, alpha, pure_temperature, q_weight,
    beta), eval (problems, every), ckpt_every (0: the last iteration only), keep_ckpts, task
    (ArithConfig fields), train (the pg step's training config), prime (the online implicit PRM's).
    """
    with loop._Preemption() as pre:
        try:
            return _run(stage, workdir, progress, pre, allow_config_change)
        except loop.Preempted:
            print(
                f"[rl] SIGTERM outside an iteration (loading, compiling) or a second one: stopped at once; "
                f"the checkpoints already in {workdir}/ckpt are kept",
                file=sys.stderr,
            )
            return {"source": stage.source, "seed": int(stage.seed), "preempted": True}


def _run(c, workdir, progress, pre, allow_config_change) -> dict:
    from tqdm.auto import tqdm

    from prm_jax.checkpoint import Checkpointer
    from prm_jax.config import to_dict
    from prm_jax.data import arith
    from prm_jax.metrics import MetricsWriter, truncate_metrics

    t0 = time.perf_counter()
    ckpt_every = int(c.ckpt_every)
    if ckpt_every < 0:
        raise ValueError(f"ckpt_every={ckpt_every}: give iterations between checkpoints, or 0 (the last only)")
    task = arith.ArithConfig(**dict(c.task))
    agent, held_out = build(c)
    config_dict = to_dict(c)
    os.makedirs(workdir, exist_ok=True)
    ck = Checkpointer(workdir, max_to_keep=int(c.keep_ckpts))
    start, seen, curve = 0, 0, []
    if ck.latest_step() is not None:
        loop.check_resume(ck.restore_config(), config_dict, workdir, allow_config_change, RESUME_FREE)
        state, data, _ = ck.restore(_abstract(agent), set_aside=True)
        agent.state = state["policy"]
        if agent.prime is not None:
            agent.prime = (agent.prime[0], state["prime"])
        start, seen, curve = int(data["iteration"]), int(data["seen"]), [tuple(x) for x in data["curve"]]
    truncate_metrics(os.path.join(workdir, "metrics.jsonl"), start)
    writer = MetricsWriter(workdir)
    max_new = int(c.max_new_tokens)
    if start == 0:
        curve = [(0, held_out_accuracy(agent, held_out, 0, max_new))]
    total, preempted, last_saved = int(c.iterations), False, start

    def save(it):
        nonlocal last_saved
        if it != last_saved:
            ck.save(it, _state(agent), {"iteration": it, "seen": seen, "curve": curve}, config_dict)
            last_saved = it

    bar = tqdm(range(start + 1, total + 1), desc=f"rl {c.source}", disable=not progress, initial=start, total=total)
    try:
        for it in bar:
            pre.in_steps = True
            g = np.random.default_rng([int(c.seed), 0, it])
            probs = [arith.sample_problem(task, g) for _ in range(int(c.problems_per_iteration))]
            m = agent.iteration(
                [p.text for p in probs],
                [p.answer for p in probs],
                lambda a, gold: a == gold,  # the task's exact integer answers
                jax.random.PRNGKey(int(c.seed) * 100_003 + it),
                max_new_tokens=max_new,
                temperature=float(c.temperature),
            )
            seen += len(probs) * int(c.group)
            m["samples_seen"] = seen
            if it % int(c.eval.every) == 0 or it == total:
                m["eval/accuracy"] = held_out_accuracy(agent, held_out, it, max_new)
                curve.append((seen, m["eval/accuracy"]))
            writer.write(it, m)
            reward = next((m[k] for k in PROCESS_KEYS if k in m), m["accuracy"])
            bar.set_postfix(acc=f"{m['accuracy']:.2f}", reward=f"{reward:.3f}")
            if (ckpt_every and it % ckpt_every == 0) or it == total or pre.requested:
                save(it)
            if pre.requested:
                preempted = True
                break
        pre.in_steps = False
    finally:
        ck.close()
        writer.close()
        bar.close()
    final = {
        "source": c.source,
        "seed": int(c.seed),
        "curve": [list(x) for x in curve],
        "final_eval_accuracy": curve[-1][1],
        "eval_problems": len(held_out),
        "preempted": preempted,
        "wall_s": round(time.perf_counter() - t0, 1),  # this process's part of the run, loading included
    }
    if not preempted:
        with open(os.path.join(workdir, "final.json"), "w") as f:
            json.dump(final, f, indent=1)
    return final
