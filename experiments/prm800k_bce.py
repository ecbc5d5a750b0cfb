"""Qwen2.5-Math-7B PRM on PRM800K with the per-step BCE loss (Qwen2.5-Math-PRM / "Lessons" recipe).

    # TPU v5p-64 (32 chips = 64 TensorCores, 8 hosts x 4 chips): the same command on every host; --distributed calls
    # jax.distributed.initialize() first, the mesh then spans all 32 chips
    prm-jax train --distributed --config experiments/prm800k_bce.py:v5p64 --workdir gs://BUCKET/prm800k_bce \
        --config.init.hf_path=gs://BUCKET/Qwen2.5-Math-7B --config.data.path=gs://BUCKET/prm800k/phase2_train.jsonl
    # one 8xH100 node:
    prm-jax train --config experiments/prm800k_bce.py:h100x8 --workdir runs/prm800k_bce \
        --config.init.hf_path=/ckpt/Qwen2.5-Math-7B --config.data.path=/data/prm800k/phase2_train.jsonl
    # memory check before spending pod hours (nothing allocated; an empty init.hf_path = the preset's shape):
    prm-jax fit-check --config experiments/prm800k_bce.py:v5p64 --devices 32 --config.init.hf_path=
    # this CPU, about a minute (tiny random model, char tokenizer, the PRM800K test fixture):
    prm-jax train --config experiments/prm800k_bce.py:tiny --workdir /tmp/prm800k_tiny

Label settings (PAPERS.md): a neutral rating (0) counts as POSITIVE, as in Qwen2.5-Math-PRM (TRL counts
it negative: `--config.data.neutral=negative`); steps after the first error are DROPPED from the loss
(`--config.data.after_first_error=keep` keeps them as negatives). Steps end with "\n\n" as in PRM800K's
own rendering. Variants: v5p64, h100x8, tiny.

Data on GCS: prepare once with `prm-jax data prepare --format prm800k --path FILE --out gs://BUCKET/tfds`,
then `--config.data.source=tfds --config.data.format=prm800k --config.data.path=gs://BUCKET/tfds`
(note: the neutral / after-first-error settings are then those given to `prepare`).
`init.hf_path` is one reference shared with `data.tokenizer`: overriding it moves both.
"""

from pathlib import Path

import ml_collections

from prm_jax.configs import base

FIXTURES = Path(__file__).resolve().parent / "fixtures"

MESHES = {
    # v5p-64 = 64 TensorCores = 32 chips (8 hosts x 4), 95 GB each: FSDP over 16, data-parallel over 2.
    "v5p64": dict(data=2, fsdp=16, tensor=1),
    # 8 x 80 GB: full FSDP over the node.
    "h100x8": dict(data=1, fsdp=8, tensor=1),
}


def get_config(arg=None):
    arg = arg or "h100x8"
    if arg not in (*MESHES, "tiny"):
        raise ValueError(f"prm800k_bce.py: unknown variant {arg!r}; choose v5p64, h100x8 or tiny")
    tiny = arg == "tiny"
    c = base.get_config()
    c.objective = "bce"
    c.model.update(preset="qwen2.5-math-7b", dtype="bfloat16", remat="full", max_seq_len=4096)
    ckpt = ml_collections.FieldReference(None if tiny else "/path/to/Qwen2.5-Math-7B", field_type=str)
    c.init.hf_path = ckpt
    c.data.update(
        source="prm800k",
        path="/path/to/prm800k/phase2_train.jsonl",
        marker="\n\n",
        neutral="positive",
        after_first_error="drop",
        pack=True,
        eval_frac=0.05,
    )
    c.data.tokenizer = "char" if tiny else ckpt  # the checkpoint's own tokenizer
    c.optim.update(lr=1e-6, warmup=50)
    c.train.update(
        steps=2000,
        batch_size=64,
        seq_len=4096,
        max_steps=64,
        ckpt_every=200,
        eval_every=200,
        eval_batches=8,
        log_every=10,
    )
    c.mesh.shape = MESHES.get(arg, dict(data=-1, fsdp=1, tensor=1))
    if arg == "h100x8":
        c.model.attention_impl = "cudnn"
        c.optim.accum_steps = 4  # 16 sequences of 4096 per micro-step over 8 GPUs
    if tiny:
        c.model = base.model_section()
        c.model.update(preset="tiny", vocab_size="tokenizer", max_seq_len=512)
        c.data.update(path=str(FIXTURES / "prm800k_raw.jsonl"), marker="<step>")
        c.train.update(
            steps=30, batch_size=4, seq_len=512, max_steps=24, ckpt_every=0, eval_every=30, eval_batches=1, log_every=1
        )
        c.data.eval_frac = 0.3  # the tiny fixtures have a handful of problems: hold out ~a third
        c.optim.update(lr=3e-3, warmup=3)
    return c


def get_hyper(h):
    """The two label-setting ablations of PAPERS.md: neutral rating, and steps after the first error."""
    return h.product(
        [h.sweep("data.neutral", ["positive", "negative"]), h.sweep("data.after_first_error", ["drop", "keep"])]
    )
