"""The host loop: `run(config, workdir)` trains with checkpoints, resume, metrics and preemption.

The loop never blocks on the device inside a step: step N+1 is dispatched before step N's metrics are
read. A checkpoint at step N is written only after step N's metrics were read and its loss, gradient
norm and updated weights found finite, so a non-finite state never reaches disk. SIGTERM during the
steps finishes the current step, saves and returns normally; during loading, building the state or
compiling (or a second SIGTERM) it stops without saving, keeping the checkpoints already written:
at once while Python code runs (reading data), and only when the call returns inside one long C
call (an XLA compile), since Python runs signal handlers between bytecodes.
"""

from __future__ import annotations

import dataclasses
import json
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
from prm_jax.config import complete, from_json, to_dict
from prm_jax.metrics import MetricsWriter, truncate_metrics


class NonFiniteLossError(FloatingPointError):
    """Raised when a step's loss, gradient norm or updated weights are NaN or inf; names the step."""


class Preempted(BaseException):
    """Raised by SIGTERM outside the training steps (loading, compiling): the run stops at once.

    A BaseException, so that no `except Exception` on the way (data readers, Orbax) swallows it.
    """


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
    train_cfg = config.train
    it = make(
        config.data,
        tokenizer,
        batch_size=batch_size,
        seq_len=int(train_cfg.seq_len),
        max_steps=int(train_cfg.max_steps),
        seed=int(train_cfg.seed),
        process_index=process_index,
        process_count=process_count,
        role=role,
    )
    return OracleQ(it) if config.data.oracle_q else it


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
    hf_path = config.init.hf_path or config.model.hf_path
    if hf_path:
        from prm_jax import hf

        params = hf.load_checkpoint(hf_path, shardings=s.state_shardings.params)[1]
    if config.init.workdir:
        params = load_params_into(config.init.workdir, s)
    if s.state_shardings.ref_params is not None:
        if config.init.ref_hf_path:
            from prm_jax import hf

            ref = hf.load_checkpoint(config.init.ref_hf_path, shardings=s.state_shardings.params)[1]
        elif config.init.ref_workdir:
            ref = load_params_into(config.init.ref_workdir, s)
    return params, ref


def load_params_into(workdir: str, s: train.Setup):
    """Returns the params of `workdir`'s latest checkpoint restored into `s`'s param shardings (the
    optimizer state is not read)."""
    ck = Checkpointer(workdir, async_save=False)
    try:
        saved = complete(from_json(ck.restore_config()), where=f"{workdir}'s saved config")
        src = train.setup(saved, model_cfg=s.model_cfg, mesh=s.mesh)
        return ck.restore_params(src.abstract_state)
    finally:
        ck.close()


class _Preemption:
    """SIGTERM handling (main thread only): inside the step loop the first SIGTERM sets a flag the
    loop polls after each step (it then saves and returns); anywhere else (reading data, building
    the state, compiling) or on a second SIGTERM it raises Preempted at once."""

    def __init__(self):
        self.requested = False
        self.in_steps = False
        self._old = None
        self._resend = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.in_steps and not self.requested:
            self.requested = True
            return
        self.requested = True
        # A handler can run inside a context that swallows exceptions (a gc callback of jax's,
        # `__del__`): the signal would be lost and the run go on. Re-send it shortly, until a
        # Preempted lands where it propagates (the process is gone by then, or the timer is cancelled).
        if self._resend is None or not self._resend.is_alive():
            self._resend = threading.Timer(0.5, os.kill, (os.getpid(), signum))
            self._resend.daemon = True
            self._resend.start()
        raise Preempted("SIGTERM")

    def caught(self) -> None:
        """Cancels the pending re-send: a Preempted has reached code that handles it."""
        if self._resend is not None:
            self._resend.cancel()

    def __exit__(self, *exc):
        self.caught()
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def _to_host(metrics) -> dict:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


# Settings a resumed run may change freely (budget, logging, where the first weights came from).
RESUME_FREE = (
    "train.steps",
    "train.log_every",
    "train.ckpt_every",
    "train.keep_ckpts",
    "train.eval_every",
    "train.eval_batches",
    "train.compiler_options",
    "mesh.",
    "init.",
)


def check_resume(saved: dict, new: dict, workdir: str, allow_change: bool, free_keys=RESUME_FREE) -> list:
    """Returns the changed keys a resume accepts; raises ValueError when the model / objective changed,
    or other settings than `free_keys` (keys, or prefixes ending in '.') did and `allow_change` is False."""
    from prm_jax.config import config_diff

    def free(key):
        return any(key == k or (k.endswith(".") and key.startswith(k)) for k in free_keys)

    diffs = [d for d in config_diff(saved, new) if not free(d[0])]
    show = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:8]) + (" ..." if len(diffs) > 8 else "")
    fatal = [k for k, _, _ in diffs if k.startswith("model.") or k == "objective"]
    if fatal:
        raise ValueError(
            f"cannot resume {workdir}: its checkpoint has another model / objective ({show}); "
            "use a new --workdir to start afresh"
        )
    if diffs and not allow_change:
        raise ValueError(
            f"resuming {workdir} with changed settings ({show}); pass --allow-config-change "
            "to resume with them, or use a new --workdir to start afresh"
        )
    if diffs:
        print(f"[train] resuming {workdir} with changed settings: {show}", file=sys.stderr)
    return diffs


def run(
    config,
    workdir: str,
    *,
    make_iterator: Callable | None = None,
    progress: bool = True,
    mesh=None,
    allow_config_change: bool = False,
) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns final metrics.

    make_iterator(config, tokenizer=, batch_size=, process_index=, process_count=) replaces the data
    module's iterator (tests, notebooks). The returned dict has the last step's metrics, `step`,
    `tokens_per_s`, `preempted`, and the last eval's metrics prefixed `eval_`.
    """
    if config.get("objective") == "pg" and make_iterator is None:
        raise ValueError(
            "objective 'pg' learns from the policy's own rollouts (advantages, old log-probs): an RL loop "
            "builds its batches; no data file holds them"
        )
    with _Preemption() as pre:
        try:
            return _run(config, workdir, make_iterator, progress, mesh, pre, allow_config_change)
        except Preempted:
            print(
                f"[train] SIGTERM outside a step (loading, compiling) or a second one: stopped at once; "
                f"the checkpoints already in {workdir}/ckpt are kept",
                file=sys.stderr,
            )
            return {"step": None, "preempted": True, "tokens_per_s": 0.0}


def _data_counts(it) -> dict:
    """Returns the loader's counts of skipped, truncated and masked records (empty for other iterators)."""
    inner = getattr(it, "it", it)  # OracleQ wraps the data iterator
    counts = dict(getattr(inner, "counts", {}) or {})
    skipped = getattr(inner, "skipped", None)
    if skipped is not None:
        counts["skipped_bad"] = skipped.total
    return counts


def _report_data(it) -> None:
    """Prints the loader's counts after its first batch: what was skipped, truncated or masked."""
    counts = _data_counts(it)
    if counts:
        print(f"[data] after the first batch: {json.dumps(counts)}", file=sys.stderr)
    skipped = getattr(getattr(it, "it", it), "skipped", None)
    if skipped is not None and skipped.total:
        print(f"[data] skipped {skipped.total} bad records: {json.dumps(skipped.as_dict())}", file=sys.stderr)


def _run(config, workdir, make_iterator, progress, mesh, pre, allow_config_change) -> dict:
    config = complete(config)
    train_cfg = config.train
    pidx, pcount = jax.process_index(), jax.process_count()
    if int(train_cfg.batch_size) % pcount:
        raise ValueError(f"train.batch_size={train_cfg.batch_size} does not divide by {pcount} processes")
    local_bs = int(train_cfg.batch_size) // pcount
    os.makedirs(workdir, exist_ok=True)
    tokenizer = None
    if make_iterator is None:
        tokenizer = make_tokenizer(config)
        make_iterator = default_iterator
    from prm_jax import model as model_lib
    from prm_jax import objectives

    why = objectives.packing_error(config.objective, config.loss) if config.data.pack else None
    if why:
        raise ValueError(f"data.pack=True is not supported here: {why}; set --config.data.pack=False")
    vocab = getattr(tokenizer, "vocab_size", None)
    s = train.setup(config, mesh=mesh, vocab_size=vocab)
    token_source = f"tokenizer {getattr(tokenizer, 'name', type(tokenizer).__name__)!r}" if tokenizer else "the data"
    config_dict = to_dict(config)
    # The saved config names the model's every field as resolved (preset, HF config, tokenizer's vocab).
    config_dict["model"].update(to_dict(dataclasses.asdict(s.model_cfg)))
    it = make_iterator(config, tokenizer=tokenizer, batch_size=local_bs, process_index=pidx, process_count=pcount)
    source = getattr(getattr(it, "it", it), "source", None)
    if source is not None:
        from prm_jax.data.pipeline import check_targets

        field = objectives.RECORD_TARGETS[config.objective]
        if field == "q_values" and config.data.oracle_q:
            field = "step_labels"  # OracleQ builds the PAV targets from step labels
        check_targets(source, field, config.objective)

    # 0 still saves the last step (and on preemption): a finished run can always be evaluated,
    # exported and resumed; only -1 keeps no checkpoint at all.
    ckpt_every = int(train_cfg.ckpt_every or 0)
    if ckpt_every < -1:
        raise ValueError(
            f"train.ckpt_every={ckpt_every}: give steps between checkpoints, 0 (last step only) or -1 (none)"
        )
    ck = Checkpointer(workdir, max_to_keep=int(train_cfg.keep_ckpts)) if ckpt_every >= 0 else None
    start = 0
    if ck is not None and ck.latest_step() is not None:
        saved = to_dict(complete(from_json(ck.restore_config()), where=f"{workdir}'s saved config"))
        check_resume(saved, config_dict, workdir, allow_config_change)
        state, data_state, _ = ck.restore(s.abstract_state, set_aside=True)
        try:
            it.set_state(data_state)
        except ValueError as e:
            raise ValueError(
                f"cannot resume {workdir}: the training data is not the one its checkpoint read ({e}); "
                f"restore that data, or start afresh in a new --workdir (or delete {os.path.join(workdir, 'ckpt')})"
            ) from None
        start = int(jax.device_get(state.step))
    else:
        params, ref = _init_params(s, config)
        state = train.init_state(s, params=params, ref_params=ref)

    total = int(train_cfg.steps)
    if pidx == 0:
        truncate_metrics(os.path.join(workdir, "metrics.jsonl"), start)  # rows past the restored step replay
    writer = MetricsWriter(workdir, enabled=pidx == 0, wandb_project=train_cfg.wandb_project, config=config_dict)
    eval_every = int(train_cfg.eval_every or 0)
    if eval_every:
        from prm_jax.data.pipeline import split_description

        final_split = split_description(config.data)
        if pidx == 0:
            print(f"[train] evaluation every {eval_every} steps on: {final_split}", file=sys.stderr)
    log_every = max(1, int(train_cfg.log_every))
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
        if not np.isfinite(m["loss"]) or m.get("state_finite", 1.0) != 1.0:
            kept = ck.latest_step() if ck is not None else None
            where = (
                f"the last good checkpoint, step {kept}, is kept in {workdir}/ckpt"
                if kept is not None
                else "no checkpoint was saved"
            )
            raise NonFiniteLossError(
                f"non-finite training state at step {step} (loss {m['loss']}, grad_norm {m.get('grad_norm')}, "
                f"param_norm {m.get('param_norm')}): nothing of this step is saved; {where}"
            )
        m.update({f"data/{k}": v for k, v in _data_counts(it).items()})
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

    last_saved = start

    def save(step):
        nonlocal last_saved
        read_pending()
        if step != last_saved:
            ck.save(step, state, data_state, config_dict)
            last_saved = step

    def read_pending():
        nonlocal pending
        if pending is not None:
            read(pending)
            pending = None

    try:
        for step in range(start + 1, total + 1):
            pre.in_steps = False  # reading data: a SIGTERM stops at once (below)
            try:
                local = next(it)
            except Preempted:
                pre.caught()
                # the last finished step's state and the data position before this batch agree
                if ck is not None and final["step"] > start:
                    save(final["step"] if pending is None else pending[0])
                final["preempted"] = True
                break
            pre.in_steps = True
            if step == start + 1:
                _warn_unknown_chars(tokenizer)
            if step == start + 1 and pidx == 0:
                _report_data(it)
            for key in ("tokens", "rejected_tokens"):
                if key in local:
                    model_lib.check_token_ids(s.model_cfg, local[key], source=token_source)
            if step_fn is None:
                example = {
                    k: jax.ShapeDtypeStruct((int(train_cfg.batch_size),) + np.shape(v)[1:], np.asarray(v).dtype)
                    for k, v in local.items()
                }
                batch_sh = train.batch_shardings_of(s, example)
                step_fn = train.make_train_step(s, example)
            batch = sharding.shard_batch(local, batch_sh)
            state, metrics = step_fn(state, batch)
            data_state = it.get_state()
            read_pending()
            pending = (step, metrics, train.tokens_in(local))
            periodic = ckpt_every > 0 and step % ckpt_every == 0
            save_now = ck is not None and (periodic or step == total or pre.requested)
            if save_now:
                save(step)  # reads (and so checks) this step's metrics first
            if eval_every and step % eval_every == 0:
                read_pending()
                if eval_fn is None:
                    eval_fn = train.make_eval_step(s, example)
                final.update(
                    {
                        "eval_" + k: v
                        for k, v in evaluate(
                            s, state, eval_fn, config, make_iterator, tokenizer, local_bs, batch_sh
                        ).items()
                    }
                )
                writer.write(step, {k[5:]: v for k, v in final.items() if k.startswith("eval_")}, prefix="eval/")
            if pre.requested:
                final["preempted"] = True
                break
        pre.in_steps = False
        read_pending()
    finally:
        if ck is not None:
            ck.close()
        writer.close()
        if bar is not None:
            bar.close()
    final["tokens_per_s"] = final.get("tokens_per_s", 0.0)
    return final


UNKNOWN_WARN = 0.01  # share of a char-tokenized text's characters that may become <unk> unannounced


def _warn_unknown_chars(tokenizer) -> None:
    """Warns once when the char tokenizer mapped more than UNKNOWN_WARN of the first batch's text to
    <unk> (a dataset the char vocabulary does not cover, e.g. LaTeX): the model cannot see it."""
    share = getattr(tokenizer, "unknown_share", 0.0)
    if share > UNKNOWN_WARN:
        print(
            f"[data] warning: the char tokenizer mapped {tokenizer.unknown_seen} of {tokenizer.chars_seen} "
            f"characters ({100 * share:.1f}%) read so far to <unk>; the model cannot see them: set "
            "data.tokenizer to an HF tokenizer folder for this data",
            file=sys.stderr,
        )


def evaluate(s: train.Setup, state, eval_fn, config, make_iterator, tokenizer, local_bs, batch_sh) -> dict:
    """Returns eval metrics over `train.eval_batches` batches of the held-out split (role 'eval':
    `data.eval_path` or `data.eval_frac` of the problems; see `data.pipeline.build_source`)."""
    from ml_collections import ConfigDict

    cfg = ConfigDict(to_dict(config))
    cfg.train.seed = int(config.train.seed) + 1_000_003
    it = make_iterator(
        cfg,
        tokenizer=tokenizer,
        batch_size=local_bs,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        role="eval",
    )
    outs = []
    for _ in range(int(config.train.eval_batches)):
        outs.append(jax.device_get(eval_fn(state, sharding.shard_batch(next(it), batch_sh))))
    return train.eval_summary(outs)


def load_trained(workdir: str, *, mesh=None, step: int | None = None):
    """Returns (model_cfg, params, config) of `workdir`'s latest (or given) checkpoint, for inference.

    Only the parameters are read (an Orbax partial restore: no optimizer moments, no reference
    copy). Params come back sharded over `mesh` (default: all devices on the data axis, i.e. replicated).
    """
    ck = Checkpointer(workdir, async_save=False)
    try:
        config = complete(from_json(ck.restore_config(step)), where=f"{workdir}'s saved config")
        vocab = config.model.vocab_size
        s = train.setup(config, mesh=mesh, vocab_size=vocab if isinstance(vocab, int) else None)
        return s.model_cfg, ck.restore_params(s.abstract_state, step), config
    finally:
        ck.close()


def export_hf(workdir: str, out_dir: str, head: str = "prm_jax", num_labels: int = 1) -> str:
    """Writes the latest params of `workdir` as a Hugging Face folder via hf.save_checkpoint, the score
    head in form `head` ('prm_jax' or 'token_classification' with `num_labels`: `prm_jax.hf_heads`),
    with the run's tokenizer (the char tokenizer as an equivalent transformers one) and its rendering
    (step marker, chat template: `tokenizers.RENDERING_FILE`), which loading the folder defaults to."""
    from prm_jax import hf
    from prm_jax.data.tokenizers import run_marker, save_rendering, save_tokenizer

    model_cfg, params, config = load_trained(workdir)
    hf.save_checkpoint(out_dir, model_cfg, jax.device_get(params), head=head, num_labels=num_labels)
    tok = make_tokenizer(config)
    save_tokenizer(tok, out_dir)
    # the marker and template it was trained with, so the folder scores as the run does
    save_rendering(out_dir, run_marker(config.data, tok), config.data.chat_template)
    return out_dir


def is_run_dir(path: str) -> bool:
    """Returns whether `path` is a prm-jax training workdir (its checkpoints and saved config)."""
    return os.path.isdir(os.path.join(path, "ckpt"))
