"""The base training config: every key a training run reads, with its default (defined here only).

`experiments/*.py` start from `get_config()` and change what differs; `prm_jax.config.complete` fills
a partial config (a test's, an old run's saved config) from it and refuses keys it does not have.
As it stands it is a runnable CPU run: a BCE-PRM on the arithmetic stream, tiny model, char tokenizer.
The defaults of the optimizer and of the loop's cadence are those the code used before this file held
them (so a partial config trains as it did).

Sections and their readers: `objective` (train.setup, objectives), `model` (train.model_config),
`loss` (objectives.make_loss_fn), `data` (data.pipeline, data.tokenizers, loop), `optim`
(optim.make_optimizer), `train` (loop.run, train.compiler_options), `mesh` (train.setup),
`init` (loop's initial / reference parameters).
"""

from __future__ import annotations

import dataclasses

import ml_collections


def model_section() -> ml_collections.ConfigDict:
    """Returns the `model` section: `preset` or `hf_path`, and every ModelConfig field as None (= the
    preset's or the HF config's value; vocab_size None = the tokenizer's)."""
    from prm_jax import model

    fields = {f.name: None for f in dataclasses.fields(model.ModelConfig)}
    return ml_collections.ConfigDict(
        dict(
            preset="tiny",  # a model.PRESETS name (the shape when hf_path is None)
            hf_path=None,  # a local HF folder whose config.json gives the shape instead
            **fields,
        ),
        type_safe=False,  # field overrides may be int / float / str / tuples (rope_scaling)
    )


def arith_section() -> ml_collections.ConfigDict:
    """Returns the `data.arith` section: every ArithConfig field with the task's own default."""
    from prm_jax.data import arith

    return ml_collections.ConfigDict(dataclasses.asdict(arith.ArithConfig()))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the base config (`arg` is unused: the base has no variants)."""
    del arg
    c = ml_collections.ConfigDict()
    c.objective = "bce"  # 'bce' | 'orm' | 'implicit_ce' | 'implicit_dpo' | 'pav' | 'sft'
    c.model = model_section()
    c.loss = ml_collections.ConfigDict(
        dict(
            beta=0.05,  # implicit PRM: reward = beta * log pi / pi_ref (the paper's 0.05)
            pav_mode="bce",  # PAV: 'bce' on Q targets, or 'mse_adv' on advantages
            logprob_chunk=1024,  # tokens per chunk of the chunked log-prob (implicit PRM, SFT)
            clip_eps=0.2,  # RL (objective 'pg'): PPO's ratio clip range
            kl_coef=0.0,  # RL: weight of the k3 KL(pi || pi_ref) term; 0: none (clipping only)
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            source="arith",  # arith | stepwise_jsonl | prm800k | math_shepherd | outcome_jsonl | ... | tfds
            path=None,  # the file (or folder) of a file source
            paths=None,  # several files instead of `path`
            format=None,  # the record format of source='tfds'
            split="train",  # the TFDS split
            tokenizer=None,  # 'char' (the arith CharTokenizer) or an HF tokenizer folder; None: 'char' for arith
            marker=None,  # the step-end marker text; None: the tokenizer's default
            chat_template=None,  # None | 'auto' | a template string
            pack=False,  # pack several examples per row (per-row targets forbid it)
            pair=False,  # DPO pairs (chosen, rejected) of the same problem
            shuffle=True,
            repeat=True,  # False: one pass, then the iterator ends
            add_eos=False,  # close each response with EOS (the SFT policy learns to stop)
            add_bos=None,  # None: the tokenizer's convention
            skip_bad=False,  # skip (and count) malformed records instead of failing
            neutral="positive",  # PRM800K rating 0: 'positive' (Qwen2.5-Math-PRM) or 'negative' (TRL)
            after_first_error="keep",  # PRM800K steps after the first -1: 'keep' (as negatives) or 'drop'
            group="solution",  # outcome jsonl: one record per 'solution'
            label_field="labels",  # step-wise jsonl: 'labels' (soft MC) or 'hard_labels'
            # the held-out split's step labels; None: label_field. A fixed reference (e.g. 'exact_labels',
            # 'hard_labels') makes runs that train on different label fields comparable.
            eval_label_field=None,
            split_on="\n\n",  # outcome jsonl: the text between steps of a `response`
            arith=arith_section(),
            oracle_q=False,  # PAV targets from exact arith labels (the tiny PAV run only)
            eval_path=None,  # a held-out file for in-training evaluation
            eval_frac=0.0,  # or the share of problems held out by a hash of their text
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-4,  # peak learning rate
            warmup=0,  # linear warmup steps
            decay="cosine",  # 'cosine' | 'linear' | 'constant' after the warmup
            final_frac=0.1,  # final lr / peak lr
            clip=1.0,  # global-norm clip (None: none)
            weight_decay=0.0,  # AdamW, on matrices only
            b1=0.9,
            b2=0.95,
            eps=1e-8,
            accum_steps=1,  # micro-batches per step (scanned)
            head_only_steps=0,  # first steps train the score head alone
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=100,
            batch_size=16,  # global, over all devices and hosts
            seq_len=256,  # tokens per row
            max_steps=8,  # reasoning steps per row
            seed=0,  # parameter init, data order, dropout-free sampling keys
            log_every=1,  # steps between metrics rows
            ckpt_every=0,  # steps between checkpoints; 0: the last step only (and on preemption); -1: none
            keep_ckpts=3,  # checkpoints kept
            eval_every=0,  # steps between in-training evaluations; 0: none
            # Weights & Biases project (pip install 'prm-jax[wandb]'; WANDB_MODE=offline logs locally);
            # None: off. metrics.jsonl and TensorBoard (RUN/tb) are always written.
            wandb_project=None,
            eval_batches=4,  # batches of the held-out split per evaluation
            compiler_options=None,  # XLA options for the jitted steps (a dict)
        )
    )
    c.mesh = ml_collections.ConfigDict(
        dict(
            shape=dict(data=-1, fsdp=1, tensor=1),  # -1 fills the devices
            rules=None,  # [(logical axis, mesh axes)]; None: sharding.DEFAULT_RULES
        )
    )
    c.init = ml_collections.ConfigDict(
        dict(
            hf_path=None,  # initial weights from an HF folder
            workdir=None,  # or from a previous run's latest checkpoint
            ref_hf_path=None,  # the implicit PRM's frozen reference (default: the initial params)
            ref_workdir=None,
        )
    )
    return c
