"""The host loop: `run(config, workdir)` trains with checkpoints, resume, metrics and preemption.

The loop never blocks on the device inside a step: step N+1 is dispatched before step N's metrics are
read (and checked for NaN). A checkpoint at step N is written only after step N's loss was checked,
so a NaN never reaches disk. SIGTERM finishes the current step, saves, and returns normally.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from prm_jax import sharding, train
from prm_jax.checkpoint import Checkpointer
from prm_jax.config import from_json, get, to_dict
from prm_jax.metrics import MetricsWriter


class NonFiniteLossError(FloatingPointError):
    """Raised when a step's loss is NaN or inf; the message names the step."""


def make_tokenizer(config):
    """Returns the tokenizer of `config.data` (the arith task's CharTokenizer by default)."""
    from prm_jax.data.tokenizers import make_tokenizer as mk

    return mk(config.data)


def default_iterator(config, *, tokenizer, batch_size, process_index, process_count, role="train"):
    """Returns the data module's iterator for `config.data` (this process's rows) over the training
    records (role 'train') or the held-out split (role 'eval')."""
    from prm_jax import data

    make = getattr(data, "make_train_iterator", None)
    if make is None:
        from prm_jax.data.pipeline import make_train_iterator as make
    t = config.train
    it = make(config.data, tokenizer, batch_size=batch_size, seq_len=int(t.seq_len),
              max_steps=int(t.max_steps), seed=int(t.seed), process_index=process_index,
              process_count=process_count, role=role)
    return OracleQ(it) if get(config, "data.oracle_q", False) else it


class OracleQ:
    """Adds PAV targets from exact step labels: q_t = prod of labels up to t (1 while all are right), v0 = 1.

    For the arithmetic task only, whose labels are exact prefix correctness; real PAV targets come from
    Monte-Carlo rollouts (labeling.py) in the data files.
    """

    def __init__(self, it):
        self.it = it

    def __iter__(self):
        return self

    def __next__(self):
        b = dict(next(self.it))
        labels = np.where(b["step_mask"], b["step_labels"], 1.0)
        b["q_targets"] = np.where(b["step_mask"], np.cumprod(labels >= 0.5, axis=1), 0.0).astype(np.float32)
        b["v0"] = np.ones(b["tokens"].shape[:1], np.float32)
        return b

    def get_state(self):
        return self.it.get_state()

    def set_state(self, state):
        self.it.set_state(state)


def _init_params(s: train.Setup, config):
    """Returns (params, ref_params) from config.init (HF folder or previous workdir), None for random."""
    params = ref = None
    hf_path = get(config, "init.hf_path") or get(config, "model.hf_path")
    if hf_path:
        from prm_jax import hf

        params = hf.load_checkpoint(hf_path, shardings=s.state_shardings.params)[1]
    if get(config, "init.workdir"):
        params = load_params_into(get(config, "init.workdir"), s)
    if s.state_shardings.ref_params is not None:
        if get(config, "init.ref_hf_path"):
            from prm_jax import hf

            ref = hf.load_checkpoint(get(config, "init.ref_hf_path"), shardings=s.state_shardings.params)[1]
        elif get(config, "init.ref_workdir"):
            ref = load_params_into(get(config, "init.ref_workdir"), s)
    return params, ref


def load_params_into(workdir: str, s: train.Setup):
    """Returns the params of `workdir`'s latest checkpoint restored into `s`'s param shardings."""
    ck = Checkpointer(workdir, async_save=False)
    try:
        saved = from_json(ck.restore_config())
        src = train.setup(saved, model_cfg=s.model_cfg, mesh=s.mesh)
        state, _, _ = ck.restore(src.abstract_state)
        return state.params
    finally:
        ck.close()


class _Preemption:
    """Turns SIGTERM into a flag the loop polls (only in the main thread)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def _to_host(metrics) -> dict:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def run(config, workdir: str, *, make_iterator: Callable | None = None, progress: bool = True,
        mesh=None) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns final metrics.

    make_iterator(config, tokenizer=, batch_size=, process_index=, process_count=) replaces the data
    module's iterator (tests, notebooks). The returned dict has the last step's metrics, `step`,
    `tokens_per_s`, `preempted`, and the last eval's metrics prefixed `eval_`.
    """
    t = config.train
    pidx, pcount = jax.process_index(), jax.process_count()
    if int(t.batch_size) % pcount:
        raise ValueError(f"train.batch_size={t.batch_size} does not divide by {pcount} processes")
    local_bs = int(t.batch_size) // pcount
    os.makedirs(workdir, exist_ok=True)
    tokenizer = None
    if make_iterator is None:
        tokenizer = make_tokenizer(config)
        make_iterator = default_iterator
    from prm_jax import model as model_lib
    from prm_jax import objectives

    why = objectives.packing_error(config.objective, dict(config.loss)) if get(config, "data.pack", False) else None
    if why:
        raise ValueError(f"data.pack=True is not supported here: {why}; set --config.data.pack=False")
    vocab = getattr(tokenizer, "vocab_size", None)
    s = train.setup(config, mesh=mesh, vocab_size=vocab)
    token_source = f"tokenizer {getattr(tokenizer, 'name', type(tokenizer).__name__)!r}" if tokenizer else "the data"
    config_dict = to_dict(config)
    config_dict["model"]["vocab_size"] = s.model_cfg.vocab_size  # resolved from the tokenizer
    it = make_iterator(config, tokenizer=tokenizer, batch_size=local_bs, process_index=pidx,
                       process_count=pcount)

    ckpt_every = int(get(config, "train.ckpt_every", 0) or 0)
    ck = Checkpointer(workdir, max_to_keep=int(get(config, "train.keep_ckpts", 3))) if ckpt_every > 0 else None
    start = 0
    if ck is not None and ck.latest_step() is not None:
        state, data_state, _ = ck.restore(s.abstract_state)
        it.set_state(data_state)
        start = int(jax.device_get(state.step))
    else:
        params, ref = _init_params(s, config)
        state = train.init_state(s, params=params, ref_params=ref)

    total = int(t.steps)
    writer = MetricsWriter(workdir, enabled=pidx == 0)
    eval_every = int(get(config, "train.eval_every", 0) or 0)
    if eval_every:
        from prm_jax.data.pipeline import split_description

        final_split = split_description(config.data)
        if pidx == 0:
            print(f"[train] evaluation every {eval_every} steps on: {final_split}", file=sys.stderr)
    log_every = max(1, int(get(config, "train.log_every", 1)))
    step_sleep = float(get(config, "train.step_sleep", 0.0) or 0.0)  # test hook: slow the loop down
    bar = None
    if progress and pidx == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc=f"train {config.objective}", dynamic_ncols=True)

    step_fn = eval_fn = batch_sh = None
    final: dict[str, Any] = {"step": start, "preempted": False}
    if eval_every:
        final["eval_split"] = final_split
    pending = None  # (step, metrics still on device, this process's non-pad tokens)
    t_last = time.perf_counter()
    data_state = it.get_state()

    def read(p) -> dict:
        nonlocal t_last
        step, dev_metrics, ntok = p
        m = _to_host(dev_metrics)
        if not np.isfinite(m["loss"]):
            raise NonFiniteLossError(f"non-finite loss {m['loss']} at step {step} (the last good "
                                     f"checkpoint is kept in {workdir}/ckpt)")
        now = time.perf_counter()
        m["tokens_per_s"] = ntok * pcount / max(now - t_last, 1e-9)
        t_last = now
        if step % log_every == 0 or step == total:
            writer.write(step, m)
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}")
        final.update(m)
        final["step"] = step
        return m

    try:
        with _Preemption() as pre:
            for step in range(start + 1, total + 1):
                local = next(it)
                for key in ("tokens", "rejected_tokens"):
                    if key in local:
                        model_lib.check_token_ids(s.model_cfg, local[key], source=token_source)
                data_state = it.get_state()
                if step_fn is None:
                    example = {k: jax.ShapeDtypeStruct((int(t.batch_size),) + np.shape(v)[1:], np.asarray(v).dtype)
                               for k, v in local.items()}
                    batch_sh = train.batch_shardings_of(s, example)
                    step_fn = train.make_train_step(s, example)
                batch = sharding.shard_batch(local, batch_sh)
                state, metrics = step_fn(state, batch)
                if pending is not None:
                    read(pending)
                pending = (step, metrics, train.tokens_in(local))
                if step_sleep:
                    time.sleep(step_sleep)
                save_now = ck is not None and (step % ckpt_every == 0 or step == total or pre.requested)
                if save_now or (eval_every and step % eval_every == 0):
                    read(pending)
                    pending = None
                if save_now:
                    ck.save(step, state, data_state, config_dict)
                if eval_every and step % eval_every == 0:
                    if eval_fn is None:
                        eval_fn = train.make_eval_step(s, example)
                    final.update({"eval_" + k: v for k, v in evaluate(s, state, eval_fn, config, make_iterator,
                                                                      tokenizer, local_bs, batch_sh).items()})
                    writer.write(step, {k[5:]: v for k, v in final.items() if k.startswith("eval_")}, prefix="eval/")
                if pre.requested:
                    final["preempted"] = True
                    break
            if pending is not None:
                read(pending)
                pending = None
    finally:
        if ck is not None:
            ck.close()
        writer.close()
        if bar is not None:
            bar.close()
    final["tokens_per_s"] = final.get("tokens_per_s", 0.0)
    return final


def evaluate(s: train.Setup, state, eval_fn, config, make_iterator, tokenizer, local_bs, batch_sh) -> dict:
    """Returns eval metrics over `train.eval_batches` batches of the held-out split (role 'eval':
    `data.eval_path` or `data.eval_frac` of the problems; see `data.pipeline.build_source`)."""
    from ml_collections import ConfigDict

    cfg = ConfigDict(to_dict(config))
    cfg.train.seed = int(config.train.seed) + 1_000_003
    it = make_iterator(cfg, tokenizer=tokenizer, batch_size=local_bs, process_index=jax.process_index(),
                       process_count=jax.process_count(), role="eval")
    outs = []
    for _ in range(int(get(config, "train.eval_batches", 4))):
        outs.append(jax.device_get(eval_fn(state, sharding.shard_batch(next(it), batch_sh))))
    return train.eval_summary(outs)


def load_trained(workdir: str, *, mesh=None, step: int | None = None):
    """Returns (model_cfg, params, config) of `workdir`'s latest (or given) checkpoint.

    Params come back sharded over `mesh` (default: all devices on the data axis, i.e. replicated).
    """
    ck = Checkpointer(workdir, async_save=False)
    try:
        config = from_json(ck.restore_config(step))
        vocab = get(config, "model.vocab_size")
        s = train.setup(config, mesh=mesh, vocab_size=vocab if isinstance(vocab, int) else None)
        state, _, _ = ck.restore(s.abstract_state, step)
        return s.model_cfg, state.params, config
    finally:
        ck.close()


def export_hf(workdir: str, out_dir: str) -> str:
    """Writes the latest params of `workdir` as a Hugging Face folder via hf.save_checkpoint."""
    from prm_jax import hf

    model_cfg, params, _ = load_trained(workdir)
    hf.save_checkpoint(out_dir, model_cfg, jax.device_get(params))
    return out_dir
