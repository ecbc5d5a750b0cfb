"""The sampler at the demo's shapes on this CPU: the labelling stage's own calls, before and after.

Replays what `prm-jax demo`'s labelling stage asks of the sampler with its trained policy: SAMPLES full
solutions per problem, then the MC rollouts of every step prefix and the V0 rollouts from each bare
question (K each; `labeling.label_solutions`), with the token budgets and prover of this checkout's
demo config (`labelling.solution_tokens`, `max_new_tokens`, `prover`) for both versions.
Each code version runs in its own process with a fresh sampler, so compiles are included, as in the
demo. `--before REV` also runs the same calls with prm_jax as it was at git revision REV (a temporary
worktree), and the two are printed side by side: new tokens/s, decode steps and ms per step.

    python benchmarks/sampler_demo.py --policy-workdir runs/demo/policy --before 605a7df

`--path beam` replays the eval stage's step-level beam search instead (`search.beam_search` with the
demo's `search` settings: N beams, width, step and finish budgets), ranked by seeded random scores so
that only the sampler is timed; both versions get the same problems and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _known(d: dict, ref: dict) -> dict:
    """Returns `d` without the keys `ref` does not have (recursively, into sections both have)."""
    return {
        k: _known(v, ref[k]) if isinstance(v, dict) and isinstance(ref[k], dict) else v
        for k, v in d.items()
        if k in ref
    }


def _read_newer_configs(loop) -> None:
    """Lets an older revision's `loop.load_trained` read a policy saved by a newer one: the settings
    added since (none of which the sampler reads) are dropped, where that revision would refuse them."""
    from prm_jax import config as config_lib

    ref, original = config_lib.base_config().to_dict(), loop.from_json

    def from_json(text_or_dict):
        d = json.loads(text_or_dict) if isinstance(text_or_dict, str) else dict(text_or_dict)
        return original(_known(d, ref))

    loop.from_json = from_json


def worker(
    policy_workdir: str, problems: int, samples: int, k: int, max_batch: int, task: dict, lab: dict, path: str
) -> dict:
    """Returns the labelling calls' counts and timings with the prm_jax on sys.path (the sampler and
    policy are built by hand, not with `sampling.load_policy`, so that older revisions run too)."""
    import jax
    import numpy as np

    from prm_jax import labeling, loop, sampling, search
    from prm_jax.data import arith

    _read_newer_configs(loop)
    cfg, params, _ = loop.load_trained(policy_workdir)
    tok = arith.CharTokenizer()
    smp = sampling.Sampler(cfg, params, pad_id=tok.pad_id, eos_id=tok.eos_id, step_id=tok.step_id, max_batch=max_batch)
    pol = sampling.Policy(smp, tok, marker=tok.STEP, answer_fn=arith.final_answer)
    task = arith.ArithConfig.from_dict(task)
    rng = np.random.default_rng(1)
    texts = [arith.sample_problem(task, rng).text for _ in range(problems)]
    calls = []
    real_sample = smp.sample

    def counted(prefixes, rng_, **kw):  # one row per compiled-call chunk: its decode steps
        t0 = time.perf_counter()
        out = real_sample(prefixes, rng_, **kw)
        calls.append(
            {
                "rows": len(prefixes),
                "seconds": time.perf_counter() - t0,
                "tokens": out.num_tokens,
                "steps": int(out.lengths_B.max()),
            }
        )
        return out

    smp.sample = counted
    t0 = time.perf_counter()
    if path == "beam":
        draw = np.random.default_rng(3)

        def rank(problems_, parents, children=None):  # random scores: the search, not a verifier, is timed
            n = len(parents if children is None else children)
            return draw.random(n), np.zeros(n, np.int64)

        out = search.beam_search(
            pol,
            texts,
            jax.random.PRNGKey(1),
            n_beams=lab["n"],
            width=lab["beam_width"],
            rank_fn=rank,
            final_fn=rank,
            max_steps=lab["beam_max_steps"],
            step_tokens=lab["step_tokens"],
            finish_tokens=lab["search_tokens"],
        )
        items = [x for r in out for x in r.solutions]
        return _summary(smp, calls, items, time.perf_counter() - t0, sampling)
    sols = search.sample_solutions(pol, texts, samples, jax.random.PRNGKey(1), max_new_tokens=lab["solution_tokens"])
    items = [
        (p, x.steps, bool(x.complete and arith.is_correct(p, x.steps)))
        for p, xs in zip(texts, sols)
        for x in xs
        if x.steps
    ]
    labeling.label_solutions(
        pol,
        arith.is_correct,
        items,
        jax.random.PRNGKey(2),
        k=k,
        prover=lab["prover"],
        max_new_tokens=lab["max_new_tokens"],
    )
    return _summary(smp, calls, items, time.perf_counter() - t0, sampling)


def _summary(smp, calls, items, wall, sampling) -> dict:
    """Returns the counts and timings of one replay's sampler calls."""
    tokens = sum(c["tokens"] for c in calls)
    return {
        "wall_s": wall,
        "sampler_s": smp.seconds,
        "new_tokens": tokens,
        "tokens_per_s": tokens / smp.seconds,
        # decode-loop iterations (an older revision without the counter: None) and the sampler's time per
        # iteration, its prefills, compiles and host work included
        "decode_steps": getattr(smp, "decode_steps", None),
        "ms_per_step": 1e3 * smp.seconds / smp.decode_steps if getattr(smp, "decode_steps", 0) else None,
        "calls": len(calls),
        "compiled_shapes": len(smp.shapes),
        "rows": sum(c["rows"] for c in calls),
        "solutions": len(items),
        "per_call": calls,
        "prm_jax": os.path.dirname(os.path.dirname(os.path.abspath(sampling.__file__))),
    }


def _cell(x) -> str:
    """Returns one table cell: a float to one decimal, an int as is, '-' for a figure a revision lacks."""
    return f"{x:>16.1f}" if isinstance(x, float) else f"{x:>16d}" if isinstance(x, int) else f"{'-':>16s}"


def _run(pythonpath: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--policy-workdir", args.policy_workdir]
    cmd += ["--problems", str(args.problems), "--samples", str(args.samples), "--k", str(args.k)]
    cmd += ["--max-batch", str(args.max_batch), "--task", json.dumps(args.task), "--lab", json.dumps(args.lab)]
    cmd += ["--path", args.path]
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode:
        raise SystemExit(f"worker failed ({pythonpath}):\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if os.path.realpath(res["prm_jax"]) != os.path.realpath(pythonpath):
        raise SystemExit(f"the worker imported prm_jax from {res['prm_jax']}, not from {pythonpath}")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy-workdir", default="runs/demo/policy", help="the demo's trained policy (make demo)")
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--before", help="a git revision whose prm_jax runs the same calls first")
    p.add_argument("--path", choices=("labels", "beam"), default="labels", help="which demo stage's calls to replay")
    p.add_argument("--timeout", type=int, default=1200)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task", type=json.loads, default=None, help=argparse.SUPPRESS)
    p.add_argument("--lab", type=json.loads, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.policy_workdir, a.problems, a.samples, a.k, a.max_batch, a.task, a.lab, a.path)))
        return 0
    sys.path.insert(0, REPO)  # this process only: each worker imports the prm_jax of its PYTHONPATH
    from prm_jax.configs import demo

    a.task = demo.TASK  # the demo's arithmetic task, passed to the workers (an older prm_jax lacks it)
    lab = demo.get_config("full").labelling  # and its budgets: both versions replay this checkout's demo
    srch = demo.get_config("full").search  # and the eval stage's beam settings
    a.lab = dict(solution_tokens=lab.solution_tokens, max_new_tokens=lab.max_new_tokens, prover=lab.prover)
    a.lab.update(
        n=srch.n,
        beam_width=srch.beam_width,
        beam_max_steps=srch.beam_max_steps,
        step_tokens=srch.step_tokens,
        search_tokens=srch.max_new_tokens,
    )
    if not os.path.isdir(a.policy_workdir):
        raise SystemExit(f"{a.policy_workdir} not found: run `make demo` (or give --policy-workdir)")
    rows = {}
    if a.before:
        with tempfile.TemporaryDirectory() as tmp:
            wt = os.path.join(tmp, "before")
            subprocess.run(
                ["git", "-C", REPO, "worktree", "add", "--detach", wt, a.before], check=True, capture_output=True
            )
            try:
                rows[f"before ({a.before})"] = _run(wt, a)
            finally:
                subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", wt], capture_output=True)
    rows["after (this checkout)"] = _run(REPO, a)
    keys = ["new_tokens", "sampler_s", "tokens_per_s", "decode_steps", "ms_per_step", "compiled_shapes", "wall_s"]
    if a.path == "beam":
        print(f"eval-stage beam search sampler calls: {a.problems} problems, {srch.n} beams, width {srch.beam_width}")
    else:
        print(
            f"labelling-stage sampler calls: {a.problems} problems x {a.samples} solutions, K={a.k} rollouts, "
            f"batch {a.max_batch}"
        )
    print(f"{'version':28s}" + "".join(f"{k:>16s}" for k in keys))
    for name, r in rows.items():
        print(f"{name:28s}" + "".join(_cell(r.get(k)) for k in keys))
    if len(rows) == 2:
        b, c = rows.values()
        print(f"speed-up (new tokens/s, compiles included): {c['tokens_per_s'] / b['tokens_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
