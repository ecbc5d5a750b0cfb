"""Training objectives: one function per `config.objective`, from (params, batch) to loss and metrics.

The implicit PRM's reward r = beta * sum log pi / pi_ref runs over the solution's step tokens
(`step_ids >= 0`: each step and its marker), not the whole response: the EOS that training appends
for the policy's sake is left out, so that a verifier scoring the same solution (rendered without
EOS, as every prefix in search is) reads q_T = r exactly. The ORM reads the last step that exists
(`step_pos >= 0`) whatever the step labels, with the outcome as its target; every outcome loss
masks rows by `outcome_mask` (unknown outcome, or steps truncated away).

Each objective returns `(loss, aux)` with `aux = {"metrics": {...scalars...}, "step_scores": [B, T],
"outcome_scores": [B] or absent}`, where a step score is the verifier's logit read at the step's
closing marker: `gather_steps(out.score, step_pos)` for the step-head objectives, and the cumulative
implicit reward q_t (PAPERS.md) for the implicit PRM. The implicit objectives and SFT use the chunked
log-prob path (hidden @ output embedding, a chunk at a time) so the float32 [B, L, V] is never held.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from prm_jax.config import complete_section
from prm_jax import losses, scoring

OBJECTIVES = ("bce", "orm", "implicit_ce", "implicit_dpo", "pav", "sft", "pg")
# The Record field each objective learns from (None: the text itself); checked before training.
RECORD_TARGETS = {
    "bce": "step_labels",
    "orm": "outcome",
    "implicit_ce": "outcome",
    "implicit_dpo": "outcome",
    "pav": "q_values",
    "sft": None,
    "pg": None,  # RL: its batches come from rollouts (advantages, old log-probs), not from records
}
# Objectives that need a frozen reference model in the train state (pg: the KL term's pi_ref).
NEEDS_REF = ("implicit_ce", "implicit_dpo", "pg")
# Batch keys each objective reads (beyond tokens / segment_ids / positions).
BATCH_KEYS = {
    "bce": ("step_pos", "step_labels", "step_mask"),
    "orm": ("step_pos", "outcome", "outcome_mask"),
    "pav": ("step_pos", "q_targets", "step_mask", "v0"),
    "implicit_ce": ("outcome", "outcome_mask", "step_ids", "step_pos", "step_mask"),
    "implicit_dpo": (
        "step_ids",
        "step_pos",
        "step_mask",
        "outcome_mask",
        "rejected_tokens",
        "rejected_step_ids",
        "rejected_outcome_mask",
    ),
    "sft": ("response_mask",),
    "pg": ("response_mask", "advantages", "old_logprobs"),
}


def _model():
    from prm_jax import model  # imported lazily so this module imports before model.py lands

    return model


def _forward(model_cfg, params, batch, prefix: str = "", lm_head: bool = False):
    m = _model()
    return m.forward(
        model_cfg,
        params,
        batch[prefix + "tokens"],
        segment_ids=batch.get(prefix + "segment_ids"),
        positions=batch.get(prefix + "positions"),
        lm_head=lm_head,
    )


def packing_error(objective: str, loss_cfg: Mapping[str, Any] | None = None) -> str | None:
    """Returns why `objective` cannot train on packed rows (several examples per row), or None.

    Step-level objectives read each step at its own marker, so packing is exact for them. The ORM,
    the implicit PRM and PAV's `mse_adv` need a per-example outcome or v0, which a packed row does
    not have (`outcome` / `v0` are per row).
    """
    if objective in ("orm", "implicit_ce", "implicit_dpo"):
        return f"objective {objective!r} needs one outcome per example; a packed row has one per row"
    if objective == "pav" and complete_section("loss", loss_cfg).pav_mode == "mse_adv":
        return "pav_loss mode 'mse_adv' needs one v0 per example; a packed row has one per row"
    return None


def likelihood_logprobs(model_cfg, params, hidden_BxLxD, tokens_BxL, chunk_size: int = 1024) -> jax.Array:
    """Returns logp_BxL (float32): the model's log-prob of each token given those before it, from its
    final hidden states through the chunked output-embedding path (entry 0 is 0)."""
    # The head runs in the compute dtype (fp32 master weights would promote the whole vocabulary
    # projection to fp32); the chunked path still accumulates and normalises in float32.
    w_DxV = _model().output_embedding(model_cfg, params).astype(hidden_BxLxD.dtype)
    return scoring.token_logprobs_chunked(hidden_BxLxD, w_DxV, tokens_BxL, chunk_size=chunk_size)


def token_logprobs(model_cfg, params, batch, prefix: str = "", chunk_size: int = 1024):
    """Returns (logp_BxL float32, model output) through the chunked hidden @ output-embedding path.

    Training and the implicit verifier both use it, so the float32 [B, L, V] is never held.
    """
    out = _forward(model_cfg, params, batch, prefix, lm_head=False)
    return likelihood_logprobs(model_cfg, params, out.hidden, batch[prefix + "tokens"], chunk_size), out


def implicit_rewards_given_ref(model_cfg, params, ref_logp_BxL, batch, num_steps: int, beta, chunk_size: int = 1024):
    """Returns the implicit PRM's step rewards r_BxT = beta * per-step sums of log pi - `ref_logp_BxL`
    (the reference's token log-probs, however computed), pi = `params` on `batch` (its step_ids)."""
    logp, _ = token_logprobs(model_cfg, params, batch, chunk_size=chunk_size)
    return scoring.implicit_step_rewards(logp, ref_logp_BxL, batch["step_ids"], num_steps, beta)


def step_logits(model_cfg, head, score_BxL, logp_BxL, batch) -> jax.Array:
    """Returns the step-score logits [B, T] (float32) of one score head: its per-token logit
    `score_BxL` read at each step's marker, plus with `model_cfg.score_likelihood` w . (M_t, m_t) from
    the token log-probs `logp_BxL` (see `score_logits`; w = head['likelihood'])."""
    step_pos = batch["step_pos"]
    logits_BxT = scoring.gather_steps(score_BxL.astype(jnp.float32), step_pos)
    if not model_cfg.score_likelihood:
        return logits_BxT
    # A feature, not a target: with gradients through it, BCE on noisy MC labels lowered the
    # likelihood of every token of a step labelled wrong, and the feature's step AUROC fell from 0.99 to 0.73.
    logp = jax.lax.stop_gradient(logp_BxL)
    m, prefix_m = scoring.step_min_logprobs(logp, batch["step_ids"], step_pos.shape[1])
    w = head["likelihood"].astype(jnp.float32)
    return jnp.where(step_pos >= 0, logits_BxT + w[0] * prefix_m + w[1] * m, 0.0)


def score_logits(model_cfg, params, batch, chunk_size: int = 1024) -> jax.Array:
    """Returns the step-score logits [B, T] (float32): the score head read at each step's marker.

    With `model_cfg.score_likelihood`, plus w . (M_t, m_t): m_t the least log-prob the model gives a
    token of step t, M_t its running minimum over steps 0..t (a wrong digit is a token the model did
    not expect), w = params['score_head']['likelihood']. Training and the verifier both call this.
    """
    out = _forward(model_cfg, params, batch, lm_head=False)
    logp = None
    if model_cfg.score_likelihood:
        if "step_ids" not in batch:
            raise ValueError("model.score_likelihood reads batch['step_ids'] (which step each token belongs to)")
        logp = likelihood_logprobs(model_cfg, params, out.hidden, batch["tokens"], chunk_size)
    return step_logits(model_cfg, params["score_head"], out.score, logp, batch)


def check_batch(objective: str, batch: Mapping[str, Any]) -> None:
    """Raises a ValueError naming the missing keys when `batch` lacks what `objective` reads."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    missing = [k for k in ("tokens",) + BATCH_KEYS[objective] if k not in batch]
    if missing:
        raise ValueError(f"objective {objective!r} needs batch keys {missing}; got {sorted(batch)}")


def make_loss_fn(objective: str, model_cfg, loss_cfg: Mapping[str, Any] | None = None) -> Callable:
    """Returns loss_fn(params, ref_params, batch) -> (loss, aux) for one objective.

    loss_cfg: the `loss` section (or part of it; the rest comes from the base config).
    """
    loss_cfg = complete_section("loss", loss_cfg)
    beta = float(loss_cfg.beta)
    chunk = int(loss_cfg.logprob_chunk)
    pav_mode = loss_cfg.pav_mode
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")

    def step_head(params, ref_params, batch):
        logits_BxT = score_logits(model_cfg, params, batch, chunk)
        mask = batch["step_mask"]
        if objective == "bce":
            loss, metrics = losses.bce_step_loss(logits_BxT, batch["step_labels"], mask)
            labels = batch["step_labels"]
        elif objective == "orm":
            mask = losses.orm_mask(batch["step_pos"] >= 0) & batch["outcome_mask"].astype(bool)[:, None]
            labels = jnp.broadcast_to(batch["outcome"].astype(jnp.float32)[:, None], mask.shape)
            loss, metrics = losses.bce_step_loss(logits_BxT, labels, mask)
        else:  # pav
            loss, metrics = losses.pav_loss(logits_BxT, batch["q_targets"], mask, batch.get("v0"), mode=pav_mode)
            labels = batch["q_targets"]
        return loss, {"metrics": metrics, "step_scores": logits_BxT, "step_labels": labels, "step_mask": mask}

    def implicit(params, ref_params, batch):
        if ref_params is None:
            raise ValueError(f"objective {objective!r} needs reference params in the train state")
        ref_params = jax.lax.stop_gradient(ref_params)
        logp, _ = token_logprobs(model_cfg, params, batch, "", chunk)
        ref_logp, _ = token_logprobs(model_cfg, ref_params, batch, "", chunk)
        ref_logp = jax.lax.stop_gradient(ref_logp)
        T = batch["step_pos"].shape[1]
        q_BxT = scoring.implicit_q_values(logp, ref_logp, batch["step_ids"], T, beta)
        steps_BxL = batch["step_ids"] >= 0
        if objective == "implicit_ce":
            loss, metrics = losses.implicit_ce_loss(
                logp, ref_logp, steps_BxL, batch["outcome"], beta, batch["outcome_mask"]
            )
            outcome = batch["outcome"]
        else:
            logp_r, _ = token_logprobs(model_cfg, params, batch, "rejected_", chunk)
            ref_logp_r, _ = token_logprobs(model_cfg, ref_params, batch, "rejected_", chunk)
            ref_logp_r = jax.lax.stop_gradient(ref_logp_r)
            pair_ok = batch["outcome_mask"].astype(bool) & batch["rejected_outcome_mask"].astype(bool)
            loss, metrics = losses.implicit_dpo_loss(
                logp, ref_logp, steps_BxL, logp_r, ref_logp_r, batch["rejected_step_ids"] >= 0, beta, pair_ok
            )
            outcome = jnp.ones(logp.shape[:1], jnp.float32)  # the chosen side is the correct one
        r_B = beta * losses.sequence_log_ratio(logp, ref_logp, steps_BxL)
        aux = {
            "metrics": metrics,
            "step_scores": q_BxT,
            "step_mask": batch["step_mask"],
            "outcome_scores": r_B,
            "outcome": outcome,
        }
        if "step_labels" in batch:
            aux["step_labels"] = batch["step_labels"]
        return loss, aux

    def policy_gradient(params, ref_params, batch):
        logp, _ = token_logprobs(model_cfg, params, batch, "", chunk)
        ref_logp = None
        if float(loss_cfg.kl_coef) > 0:
            if ref_params is None:
                raise ValueError("objective 'pg' with loss.kl_coef > 0 needs reference params in the train state")
            ref_logp = jax.lax.stop_gradient(
                token_logprobs(model_cfg, jax.lax.stop_gradient(ref_params), batch, "", chunk)[0]
            )
        loss, metrics = losses.policy_gradient_loss(
            logp,
            batch["old_logprobs"],
            batch["advantages"],
            batch["response_mask"],
            clip_eps=float(loss_cfg.clip_eps),
            ref_logp_BxL=ref_logp,
            kl_coef=float(loss_cfg.kl_coef),
        )
        return loss, {"metrics": metrics}

    def sft(params, ref_params, batch):
        logp, _ = token_logprobs(model_cfg, params, batch, "", chunk)
        loss, metrics = losses.sft_loss(logp, batch["tokens"], batch["response_mask"])
        return loss, {"metrics": metrics}

    if objective in ("bce", "orm", "pav"):
        return step_head
    if objective == "pg":
        return policy_gradient
    if objective in NEEDS_REF:
        return implicit
    return sft
