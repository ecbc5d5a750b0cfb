"""Jitted, batched verifier scoring of (problem, steps) pairs: score-head verifiers and implicit PRMs.

* `kind='score'` (BCE-PRM, ORM, PAV): P(step correct) = sigmoid(score-head logit at the step's marker).
  A BCE-PRM trained on soft MC labels predicts Q^pi; on hard labels from K rollouts, P(any of K
  rollouts succeeds), a Best-of-K prover's Q; a PAV predicts the prover's Q^mu.
  `likelihood_verifier` is the label-free baseline: the model's least likely shown token so far.
* `kind='lm_pair'` (generative PRMs such as Math-Shepherd's): P(step correct) = softmax over the LM's
  logits of a good and a bad token, [good], at each step position; `prm_jax.heads` builds these with
  the family's own rendering (`encoder`).
* `kind='mlp_head'` (Qwen2.5-Math-PRM's `Qwen2ForProcessRewardModel`): P(step correct) =
  softmax(W2 relu(W1 h + b1) + b2)[1] from the hidden state h at each step position (`head=` holds
  w1 [D, D], b1 [D], w2 [D, 2], b2 [2]; `prm_jax.heads` reads them from the checkpoint).
* `kind='implicit'`: r_t = beta * sum over step t's tokens of log pi(y) / pi_ref(y) (step reward),
  and q_t = r_0 + ... + r_t, the implicit Q read at step t's end; q_T is the outcome reward the
  objective trains (the same step tokens, no EOS: see `prm_jax.objectives`). Log-probs go through
  the chunked path training uses, so the [B, L, V] logits are never held.

`score_all` returns, per solution: `rewards` (what best-of-N aggregates: the probabilities, or r_t),
`values` (the verifier's estimate of the solution so far at each step: the probabilities, or q_t;
`last` aggregation and beam ranking read it), `probs` (in [0, 1]: the probabilities, or sigmoid(q_t),
the implicit PRM's ProcessBench read-out) and `tokens`. Inputs are rendered with
`prm_jax.data.tokenize.encode_example`, the same function training uses, padded to shape buckets
and scored by one jitted function per bucket. `tokens_scored` counts verifier compute in tokens
(an implicit PRM runs two models, so its tokens count twice).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prm_jax import model as model_lib
from prm_jax import objectives, shapes

KINDS = ("score", "implicit", "lm_pair", "mlp_head")
# Shape buckets: on a CPU a compile costs more than many padded rows, so batches round up to a power
# of two of at least MIN_BATCH, lengths to LEN_BUCKET and step counts to a power of two of at least MIN_STEPS.
LEN_BUCKET = 64
MIN_BATCH = 16
MIN_STEPS = 4


@functools.partial(jax.jit, static_argnums=(0, 7))
def _score_head_probs(cfg, params, tokens_BxL, positions_BxL, segment_ids_BxL, step_pos_BxT, step_ids_BxL, chunk_size):
    """Returns sigmoid(step-score logit) at each step marker, [B, T] float32 (`objectives.score_logits`)."""
    batch = {
        "tokens": tokens_BxL,
        "positions": positions_BxL,
        "segment_ids": segment_ids_BxL,
        "step_pos": step_pos_BxT,
        "step_ids": step_ids_BxL,
    }
    return jax.nn.sigmoid(objectives.score_logits(cfg, params, batch, chunk_size))


@functools.partial(jax.jit, static_argnums=0)
def _lm_pair_probs(cfg, params, tokens_BxL, positions_BxL, segment_ids_BxL, step_pos_BxT, pair_2):
    """Returns softmax over the LM's logits of (good, bad) tokens, [good], at each step position, [B, T]:
    sigmoid(z_good - z_bad), from the hidden states there (the [B, L, V] logits are never formed)."""
    out = model_lib.forward(
        cfg, params, tokens_BxL, segment_ids=segment_ids_BxL, positions=positions_BxL, lm_head=False
    )
    valid = step_pos_BxT >= 0
    idx = jnp.where(valid, step_pos_BxT, 0)
    h_BxTxD = jnp.take_along_axis(out.hidden, idx[..., None], axis=1).astype(jnp.float32)
    w_Dx2 = model_lib.output_embedding(cfg, params)[:, pair_2].astype(jnp.float32)
    z_BxTx2 = jnp.einsum("btd,dk->btk", h_BxTxD, w_Dx2)
    return jnp.where(valid, jax.nn.sigmoid(z_BxTx2[..., 0] - z_BxTx2[..., 1]), 0.0)


@functools.partial(jax.jit, static_argnums=0)
def _mlp_head_probs(cfg, params, tokens_BxL, positions_BxL, segment_ids_BxL, step_pos_BxT, head):
    """Returns softmax(W2 relu(W1 h + b1) + b2)[1] at each step position, [B, T] float32 (0 past T)."""
    out = model_lib.forward(
        cfg, params, tokens_BxL, segment_ids=segment_ids_BxL, positions=positions_BxL, lm_head=False
    )
    valid = step_pos_BxT >= 0
    idx = jnp.where(valid, step_pos_BxT, 0)
    h_BxTxD = jnp.take_along_axis(out.hidden, idx[..., None], axis=1).astype(jnp.float32)
    a_BxTxD = jax.nn.relu(h_BxTxD @ head["w1"].astype(jnp.float32) + head["b1"].astype(jnp.float32))
    z_BxTx2 = a_BxTxD @ head["w2"].astype(jnp.float32) + head["b2"].astype(jnp.float32)
    return jnp.where(valid, jax.nn.softmax(z_BxTx2, axis=-1)[..., 1], 0.0)


@functools.partial(jax.jit, static_argnums=(0, 7, 9))
def _implicit_rewards(
    cfg, params, ref_params, tokens_BxL, positions_BxL, segment_ids_BxL, step_ids_BxL, num_steps, beta, chunk_size
):
    """Returns the implicit step rewards r_BxT = beta * per-step sums of policy/reference log-ratios."""
    batch = {"tokens": tokens_BxL, "positions": positions_BxL, "segment_ids": segment_ids_BxL, "step_ids": step_ids_BxL}
    ref_logp, _ = objectives.token_logprobs(cfg, ref_params, batch, chunk_size=chunk_size)
    return objectives.implicit_rewards_given_ref(cfg, params, ref_logp, batch, num_steps, beta, chunk_size)


class Verifier:
    """Scores solutions step by step. See the module docstring for `kind` and what it returns."""

    def __init__(
        self,
        kind: str,
        model_cfg,
        params,
        tokenizer,
        *,
        marker: str,
        ref_params=None,
        beta: float | None = None,
        output: str = "reward",
        max_batch: int = 64,
        max_len: int = 512,
        max_steps: int = 128,
        chat_template: str | None = None,
        name: str = "",
        logprob_chunk: int = 1024,
        encoder=None,
        pair: tuple[int, int] | None = None,
        head: dict | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown verifier kind {kind!r}; expected one of {KINDS}")
        if kind == "score" and not model_cfg.score_head:
            raise ValueError("a 'score' verifier needs a model with a score head (score_head=True)")
        if kind == "implicit" and ref_params is None:
            raise ValueError("an implicit PRM needs ref_params (the reference policy)")
        if kind == "lm_pair" and (pair is None or len(pair) != 2):
            raise ValueError("an 'lm_pair' verifier needs pair=(good token id, bad token id)")
        if kind == "mlp_head" and (head is None or set(head) != {"w1", "b1", "w2", "b2"}):
            raise ValueError("an 'mlp_head' verifier needs head={w1, b1, w2, b2} (prm_jax.heads reads them)")
        if kind == "implicit" and beta is None:
            raise ValueError("an implicit PRM needs beta (its training run's config.loss.beta)")
        if output not in ("reward", "q"):
            raise ValueError(f"output must be 'reward' or 'q', got {output!r}")
        self.kind, self.cfg, self.params, self.ref_params = kind, model_cfg, params, ref_params
        self.tokenizer, self.marker, self.chat_template = tokenizer, marker, chat_template
        self.beta, self.output, self.name = None if beta is None else float(beta), output, name or kind
        self.max_batch, self.max_len, self.max_steps = int(max_batch), int(max_len), int(max_steps)
        self.logprob_chunk = int(logprob_chunk)
        # encoder(problem, steps) -> example: a public PRM's own rendering (prm_jax.heads); None: prm-jax's
        self.encoder, self.pair = encoder, None if pair is None else np.asarray(pair, np.int32)
        self.head = head
        self.tokens_scored = 0

    def _encode(self, problem: str, steps: Sequence[str]) -> dict:
        from prm_jax.data import tokenize

        if self.encoder is not None:
            return self.encoder(problem, list(steps))
        from prm_jax.data.records import Record

        ex = tokenize.encode_example(
            Record(problem, list(steps)),
            self.tokenizer,
            marker=self.marker,
            max_len=self.max_len,
            max_steps=self.max_steps,
            chat_template=self.chat_template,
        )
        if ex["dropped_steps"]:
            raise ValueError(
                f"solution with {len(steps)} steps does not fit max_len={self.max_len} / "
                f"max_steps={self.max_steps} of verifier {self.name!r}"
            )
        return ex

    def encode_truncated(self, problem: str, steps: Sequence[str]) -> dict:
        """Returns the example of one solution cut to max_len: steps whose position falls past it are
        dropped (`dropped_steps` counts them); raises tokenize.ExampleTooLong if no step fits."""
        from prm_jax.data import tokenize
        from prm_jax.data.records import Record

        if self.encoder is None:
            return tokenize.encode_example(
                Record(problem, list(steps)),
                self.tokenizer,
                marker=self.marker,
                max_len=self.max_len,
                max_steps=len(steps),
                chat_template=self.chat_template,
            )
        ex = self.encoder(problem, list(steps))
        if len(ex["tokens"]) <= self.max_len:
            return ex
        keep = int(np.sum(ex["step_pos"] < self.max_len))
        if keep == 0:
            raise tokenize.ExampleTooLong(f"no step of this solution ends within max_len={self.max_len}")
        cut = dict(ex)
        for k in ("tokens", "segment_ids", "positions", "step_ids", "response_mask"):
            cut[k] = ex[k][: self.max_len]
        for k in ("step_pos", "step_labels", "step_mask", "step_segment"):
            cut[k] = ex[k][:keep]
        cut["dropped_steps"] = np.int32(len(ex["step_pos"]) - keep)
        return cut

    def score_all(self, problems: Sequence[str], steps_list: Sequence[Sequence[str]]) -> dict:
        """Returns {'rewards', 'values', 'probs' (lists of [T_i] float arrays), 'tokens': [N] int array}
        (implicit PRMs also under their own names 'reward' and 'q')."""
        if len(problems) != len(steps_list):
            raise ValueError(f"{len(problems)} problems but {len(steps_list)} step lists")
        return self.score_examples([self._encode(p, s) for p, s in zip(problems, steps_list)])

    def score_examples(self, exs: Sequence[dict]) -> dict:
        """Returns what `score_all` returns, for examples already made by `tokenize.encode_example`."""
        vals: list = [None] * len(exs)
        for idx, batch, t in self.batches(exs):
            rows = (batch["tokens"], batch["positions"], batch["segment_ids"])
            if self.kind == "score":
                out = _score_head_probs(
                    self.cfg, self.params, *rows, batch["step_pos"], batch["step_ids"], self.logprob_chunk
                )
            elif self.kind == "lm_pair":
                out = _lm_pair_probs(self.cfg, self.params, *rows, batch["step_pos"], self.pair)
            elif self.kind == "mlp_head":
                out = _mlp_head_probs(self.cfg, self.params, *rows, batch["step_pos"], self.head)
            else:
                out = _implicit_rewards(
                    self.cfg,
                    self.params,
                    self.ref_params,
                    *rows,
                    batch["step_ids"],
                    t,
                    jnp.float32(self.beta),
                    self.logprob_chunk,
                )
            self.collect(vals, idx, out, exs)
        return self.outputs(vals, exs)

    def batches(self, exs: Sequence[dict]):
        """Yields (indices into exs, padded host batch, step bucket T): like lengths share a batch, each
        padded to this verifier's shape buckets (its token ids checked against the model)."""
        from prm_jax.data import tokenize

        order = sorted(range(len(exs)), key=lambda i: len(exs[i]["tokens"]))
        source = f"the tokenizer of verifier {self.name!r} ({getattr(self.tokenizer, 'name', type(self.tokenizer).__name__)})"
        for s in range(0, len(order), self.max_batch):
            idx = order[s : s + self.max_batch]
            chunk = [exs[i] for i in idx]
            b = shapes.pow2(len(chunk), MIN_BATCH)
            chunk = chunk + [chunk[0]] * (b - len(chunk))
            seq = shapes.multiple(max(len(e["tokens"]) for e in chunk), LEN_BUCKET)
            t = shapes.pow2(max(len(e["step_pos"]) for e in chunk), MIN_STEPS)
            batch = tokenize.pad_batch(chunk, seq, t, pad_id=self.tokenizer.pad_id)
            model_lib.check_token_ids(self.cfg, batch["tokens"], source=source)
            yield idx, batch, t

    @staticmethod
    def collect(vals: list, idx: Sequence[int], out_BxT, exs: Sequence[dict]) -> None:
        """Stores row j of a batch's [B, T] scores, cut to its example's steps, as vals[idx[j]]."""
        out = np.asarray(out_BxT)
        for j, i in enumerate(idx):
            vals[i] = out[j, : len(exs[i]["step_pos"])].astype(np.float32)

    def outputs(self, vals: list, exs: Sequence[dict]) -> dict:
        """Returns `score_all`'s dict from per-example step scores (and counts the tokens scored)."""
        n_tok = np.asarray([len(e["tokens"]) for e in exs], np.int64) * (2 if self.kind == "implicit" else 1)
        bad = [i for i, v in enumerate(vals) if not np.all(np.isfinite(v))]
        if bad:
            raise FloatingPointError(
                f"verifier {self.name!r} gave non-finite step scores for {len(bad)} of "
                f"{len(vals)} solutions (first: solution {bad[0]}); the checkpoint's "
                "weights are not finite"
            )
        self.tokens_scored += int(n_tok.sum())
        if self.kind in ("score", "lm_pair", "mlp_head"):
            return {"probs": vals, "rewards": vals, "values": vals, "tokens": n_tok}
        q = [np.cumsum(v).astype(np.float32) for v in vals]
        return {
            "reward": vals,
            "q": q,
            "rewards": vals,
            "values": q,
            "probs": [1.0 / (1.0 + np.exp(-x)) for x in q],
            "tokens": n_tok,
        }

    def _pick(self, key, problems, steps_list, return_tokens):
        if not problems:
            return ([], np.zeros(0, np.int64)) if return_tokens else []
        out = self.score_all(problems, steps_list)
        return (out[key], out["tokens"]) if return_tokens else out[key]

    def step_scores(self, problems: Sequence[str], steps_list: Sequence[Sequence[str]], *, return_tokens: bool = False):
        """Returns per-solution step scores (list of [T_i] arrays) [and verifier tokens per solution]:
        the probabilities, or for an implicit PRM r_t (output='reward') or q_t (output='q')."""
        key = "probs" if self.kind != "implicit" else {"reward": "reward", "q": "q"}[self.output]
        return self._pick(key, problems, steps_list, return_tokens)

    def values(self, problems: Sequence[str], steps_list: Sequence[Sequence[str]], *, return_tokens: bool = False):
        """Returns per-solution prefix values (probabilities, or an implicit PRM's q_t) [and tokens]."""
        return self._pick("values", problems, steps_list, return_tokens)


def score_step_probs(verifier: Verifier, records, *, batch_size: int, progress: bool = True):
    """Returns (probs, truncated): per record, float64 [n_scored] step probabilities under `verifier`
    (any kind: a score head's, a public family's, an implicit PRM's sigmoid(q_t)), and how many
    records lost trailing steps to the verifier's max_len (their unscored steps cannot be predicted
    wrong; a record whose prompt alone exceeds max_len has no scored step)."""
    from tqdm import tqdm

    from prm_jax.data import tokenize

    examples, probs = {}, [np.zeros(0)] * len(records)
    for i, r in enumerate(records):
        try:
            examples[i] = verifier.encode_truncated(r.problem, r.steps)
        except tokenize.ExampleTooLong:
            pass  # no step fits: nothing scored, counted as truncated below
    truncated = sum(int(i not in examples or examples[i]["dropped_steps"] > 0) for i in range(len(records)))
    keys = sorted(examples, key=lambda i: len(examples[i]["tokens"]))  # like lengths share a batch
    for s in tqdm(range(0, len(keys), batch_size), desc="scoring", unit="batch", disable=not progress):
        idx = keys[s : s + batch_size]
        out = verifier.score_examples([examples[i] for i in idx])["probs"]
        for i, p in zip(idx, out):
            probs[i] = p.astype(np.float64)
    return probs, truncated


def likelihood_verifier(model_cfg, params, tokenizer, *, marker: str, name: str = "likelihood", **kwargs) -> Verifier:
    """Returns a score Verifier whose step probability is sigmoid(M_t), M_t the least log-prob the
    model gives a token of steps 0..t: the model's own confidence, no labels (a baseline for PRMs).

    Any model with an LM head will do (its score head, if any, is replaced by one that reads only the
    likelihood feature of `objectives.score_logits`).
    """
    cfg = model_cfg.replace(score_head=True, score_likelihood=True)
    head = {
        "kernel": jnp.zeros((cfg.d_model, 1), jnp.float32),
        "bias": jnp.zeros((1,), jnp.float32),
        "likelihood": jnp.asarray([1.0, 0.0], jnp.float32),
    }
    return Verifier("score", cfg, dict(params, score_head=head), tokenizer, marker=marker, name=name, **kwargs)


def load_verifier(
    kind: str,
    *,
    workdir: str | None = None,
    hf_dir: str | None = None,
    ref_workdir: str | None = None,
    ref_hf_dir: str | None = None,
    tokenizer=None,
    marker: str | None = None,
    shardings=None,
    **kwargs,
) -> Verifier:
    """Returns a Verifier from a training workdir (`loop.load_trained`) or a local HF folder
    (`shardings`, as `hf.load_checkpoint` takes, places an HF folder's tensors one by one).

    For an implicit PRM the reference comes from ref_workdir / ref_hf_dir, else from the run's
    `config.init.ref_workdir`; beta defaults to the run's `config.loss.beta`.
    """
    cfg, params, config = _load_model(workdir, hf_dir, shardings)
    ref = None
    if kind == "implicit":
        ref_workdir = ref_workdir or (config.init.ref_workdir if config is not None else None)
        if not (ref_workdir or ref_hf_dir):
            raise ValueError("implicit verifier: give ref_workdir or ref_hf_dir (the reference policy)")
        _, ref, _ = _load_model(ref_workdir, ref_hf_dir, shardings)
        if config is not None and "beta" not in kwargs:
            kwargs["beta"] = float(config.loss.beta)
    from prm_jax.data import tokenizers

    if tokenizer is None:  # a workdir's own tokenizer (its config.data), else the HF folder's
        tokenizer = tokenizers.make_tokenizer(config.data if config is not None else hf_dir)
    # Render as the run trained: its data.marker / chat_template, or what its export recorded.
    if config is not None:
        trained = {"marker": tokenizers.run_marker(config.data, tokenizer), "chat_template": config.data.chat_template}
    else:
        trained = tokenizers.load_rendering(hf_dir)
    if kwargs.get("chat_template") is None and trained.get("chat_template") is not None:
        kwargs["chat_template"] = trained["chat_template"]
    if marker is None:
        marker = trained.get("marker") or tokenizers.default_marker(tokenizer)
    return Verifier(kind, cfg, params, tokenizer, marker=marker, ref_params=ref, **kwargs)


def _load_model(workdir, hf_dir, shardings=None):
    """Returns (model_cfg, params, config or None) from a training workdir or an HF folder."""
    if workdir:
        from prm_jax import loop

        return loop.load_trained(workdir)
    if hf_dir:
        from prm_jax import hf

        cfg, params = hf.load_checkpoint(hf_dir, shardings=shardings)
        return cfg, params, None
    raise ValueError("give a training workdir or a Hugging Face folder")
