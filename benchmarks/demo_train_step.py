"""The demo policy's SFT step on this CPU: ms per step, its forward alone, the data, XLA's counts.

Builds exactly what `prm-jax demo`'s policy stage trains (`prm_jax/configs/demo.py`, `policy`
section: tiny model, batch 32 x 144, the arithmetic task) with random init, and times
`train.make_train_step` (compile excluded, each step waited on), the loss's forward alone, and
the data iterator. It also prints the FLOPs and bytes of XLA's cost analysis of the compiled step.
Under `model.scan_layers` (the default) that analysis counts the layer loop's body once, so
`--set model.scan_layers=False` gives the whole step's count.
`--set key=value` (repeatable) overrides a key of that section (`config.apply_overrides`, as `--config.key=value`), e.g. `--set model.scan_layers=False`;
each setting runs in its own process, so compiles and thread pools do not mix.

    python benchmarks/demo_train_step.py --steps 20 --set "" --set model.scan_layers=False
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def policy_config(setting: str):
    """Returns the demo's policy config with `setting` ('key=value', or '' for none) applied."""
    from prm_jax import config as config_lib
    from prm_jax.configs import demo

    cfg = demo.get_config("full").policy
    if setting:
        config_lib.apply_overrides(cfg, [f"config.{setting}"])
    return cfg


def worker(setting: str, steps: int) -> dict:
    """Returns {'setting', 'data_ms', 'step_ms', 'forward_ms', 'flops', 'bytes'} for one setting."""
    import jax

    from prm_jax import loop, sharding, train

    cfg = policy_config(setting)
    bs = int(cfg.train.batch_size)
    tok = loop.make_tokenizer(cfg)
    it = loop.default_iterator(cfg, tokenizer=tok, batch_size=bs, process_index=0, process_count=1)
    t = time.perf_counter()
    batches = [next(it) for _ in range(steps)]
    data_ms = (time.perf_counter() - t) / steps * 1e3
    s = train.setup(cfg, vocab_size=tok.vocab_size)
    state = train.init_state(s)
    example = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
    bsh = train.batch_shardings_of(s, example)
    step = train.make_train_step(s, example)
    dev = [sharding.shard_batch(b, bsh) for b in batches]
    cost = step.lower(state, dev[0]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    state, m = step(state, dev[0])
    jax.block_until_ready(m)
    t = time.perf_counter()
    for b in dev:
        state, m = step(state, b)
        jax.block_until_ready(m)
    step_ms = (time.perf_counter() - t) / steps * 1e3
    fwd = jax.jit(lambda st, b: s.loss_fn(st.params, st.ref_params, b)[0])
    jax.block_until_ready(fwd(state, dev[0]))
    t = time.perf_counter()
    for b in dev:
        jax.block_until_ready(fwd(state, b))
    forward_ms = (time.perf_counter() - t) / steps * 1e3
    return dict(
        setting=setting or "(demo config)",
        data_ms=data_ms,
        step_ms=step_ms,
        forward_ms=forward_ms,
        flops=float(cost.get("flops", 0.0)),
        bytes=float(cost.get("bytes accessed", 0.0)),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    ap.add_argument("--set", action="append", dest="settings", help="policy-section override key=value ('' = none)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.steps)))
        return 0
    rows = []
    for setting in args.settings or [""]:
        out = subprocess.run(
            [sys.executable, __file__, "--steps", str(args.steps), "--worker", setting],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"demo_train_step.py: setting {setting!r} failed (exit {out.returncode})")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| setting | step ms | forward ms | data ms/batch | GFLOP/step | GB accessed/step |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['step_ms']:.1f} | {r['forward_ms']:.1f} | {r['data_ms']:.1f} | "
            f"{r['flops'] / 1e9:.2f} | {r['bytes'] / 1e9:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
