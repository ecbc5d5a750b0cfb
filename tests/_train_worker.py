"""Helpers for the training tests: a tiny config, a synthetic batch stream, and a subprocess entry point.

Run as a script it trains one config in its own process (used by the resume / SIGTERM / NaN /
multi-process tests):  python tests/_train_worker.py WORKDIR JSON_OVERRIDES [PROCESS_ID NUM_PROCS PORT]
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import numpy as np

# Cheaper XLA CPU compiles (compiles dominate these tiny runs); same losses here to the last bit.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def tiny_config(objective: str = "bce", **train):
    """Returns the base config for a 2-layer d_model 32 model trained on the synthetic stream."""
    from prm_jax.configs import base

    c = base.get_config()
    c.objective = objective
    c.model.update(
        preset="tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64
    )
    c.loss.update(beta=0.5, pav_mode="bce", logprob_chunk=64)
    c.data.source = "synthetic"  # tests pass `synthetic_iterator_factory` as the iterator
    c.optim.update(lr=3e-3, warmup=2, decay="cosine", clip=1.0, weight_decay=0.01, accum_steps=1, head_only_steps=0)
    c.train.update(
        steps=5,
        batch_size=8,
        seq_len=32,
        max_steps=4,
        seed=0,
        log_every=1,
        ckpt_every=-1,  # no checkpoint unless a test asks (0 would save the last step)
        eval_every=0,
        eval_batches=1,
        compiler_options=FAST_COMPILE,
    )
    c.train.update(train)
    return c


def synthetic_batch(
    index: int,
    *,
    batch_size: int,
    seq_len: int,
    max_steps: int,
    vocab: int = 64,
    seed: int = 0,
    rows: slice | None = None,
) -> dict:
    """Returns batch number `index` of a deterministic stream, in the DESIGN.md batch layout.

    Each row is a prompt of 4 tokens then `max_steps` steps of equal length closed by token 3; labels
    depend on the tokens (a learnable rule: a step is good when its first token is even).
    """
    rng = np.random.default_rng([seed, index])
    B, L, T = batch_size, seq_len, max_steps
    tokens = rng.integers(5, vocab, size=(B, L)).astype(np.int32)
    step_len = (L - 4) // T
    step_pos = np.array([4 + (t + 1) * step_len - 1 for t in range(T)], np.int32)
    tokens[:, step_pos] = 3
    step_ids = np.full((B, L), -1, np.int32)
    for t in range(T):
        step_ids[:, 4 + t * step_len : 4 + (t + 1) * step_len] = t
    first = tokens[:, 4 + np.arange(T) * step_len]
    labels = (first % 2 == 0).astype(np.float32)
    outcome = labels.min(axis=1)
    rej = rng.integers(5, vocab, size=(B, L)).astype(np.int32)
    rej[:, step_pos] = 3
    batch = {
        "tokens": tokens,
        "segment_ids": np.ones((B, L), np.int32),
        "positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)).copy(),
        "step_ids": step_ids,
        "response_mask": step_ids >= 0,
        "step_pos": np.broadcast_to(step_pos, (B, T)).copy(),
        "step_labels": labels,
        "step_mask": np.ones((B, T), bool),
        "outcome": outcome,
        "q_targets": np.clip(np.cumprod(labels, axis=1) * 0.8 + 0.1, 0, 1).astype(np.float32),
        "v0": np.full((B,), 0.5, np.float32),
        "rejected_tokens": rej,
        "rejected_segment_ids": np.ones((B, L), np.int32),
        "rejected_positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)).copy(),
        "rejected_response_mask": step_ids >= 0,
        "rejected_step_ids": step_ids,
        "outcome_mask": np.ones((B,), bool),
        "rejected_outcome_mask": np.ones((B,), bool),
    }
    if rows is not None:
        batch = {k: v[rows] for k, v in batch.items()}
    return batch


class SyntheticIterator:
    """Iterator over `synthetic_batch` with get_state / set_state (this process's rows only).

    Fault hooks of the tests (kept out of the library): `nan_step` gives the batch of that training
    step NaN step labels (so its loss is NaN); `sleep` seconds pass before each batch (a slow loader,
    so that kills land inside a run).
    """

    def __init__(
        self,
        *,
        batch_size,
        seq_len,
        max_steps,
        seed=0,
        process_index=0,
        process_count=1,
        vocab=64,
        nan_step=-1,
        sleep=0.0,
    ):
        self.kw = dict(
            batch_size=batch_size * process_count, seq_len=seq_len, max_steps=max_steps, vocab=vocab, seed=seed
        )
        self.rows = slice(process_index * batch_size, (process_index + 1) * batch_size)
        self.index = 0
        self.nan_step, self.sleep = nan_step, sleep

    def __iter__(self):
        return self

    def __next__(self):
        if self.sleep:
            time.sleep(self.sleep)
        b = synthetic_batch(self.index, rows=self.rows, **self.kw)
        self.index += 1
        if self.index == self.nan_step:
            b["step_labels"] = np.full_like(b["step_labels"], np.nan)
        return b

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])


def synthetic_iterator_factory(config, *, process_index, process_count, batch_size, hooks=None, **_):
    """Returns a SyntheticIterator for `config` (the `make_iterator` hook of loop.run); `hooks` holds
    SyntheticIterator's fault hooks."""
    t = config.train
    return SyntheticIterator(
        batch_size=batch_size,
        seq_len=t.seq_len,
        max_steps=t.max_steps,
        seed=0,
        process_index=process_index,
        process_count=process_count,
        vocab=config.model.vocab_size,
        **(hooks or {}),
    )


def main(argv):
    workdir, overrides = argv[0], json.loads(argv[1])
    if len(argv) > 2:
        pid, nproc, port = int(argv[2]), int(argv[3]), int(argv[4])
        import jax

        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
    from prm_jax import loop

    objective = overrides.pop("objective", "bce")
    # worker.* keys are fault hooks of the synthetic iterator, not config keys
    hooks = {k.split(".", 1)[1]: overrides.pop(k) for k in list(overrides) if k.startswith("worker.")}
    config = tiny_config(objective)
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    make = functools.partial(synthetic_iterator_factory, hooks=hooks)
    final = loop.run(config, workdir, make_iterator=make, progress=False)
    print("FINAL " + json.dumps({k: v for k, v in final.items() if isinstance(v, (int, float, bool))}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
