"""RL rewards from a PRM and their advantages, as pure numpy functions on padded [B, L] / [B, T] arrays.

The reward sources of issue 18 (PAPERS.md, "RL with process rewards"):
  * outcome  the grader's 0/1 at the last response token (`outcome_token_rewards`);
  * prm      a frozen verifier's step probabilities p as r_i = P(+) - P(-) = 2p - 1 at each step's closing
             token, credited by sum (r_i as is) or PURE's min-form (r_i * softmax(-r / T)_i: the
             trajectory's credit is a soft minimum of its step rewards) (`prm_step_rewards`);
  * pav      Q^pi + alpha * A^mu per step, A^mu_t = Q^mu_t - Q^mu_{t-1} with Q^mu_{-1} = V^mu(question)
             (`pav_step_rewards`; `q_weight=0` leaves Rewarding Progress's RL form, outcome + alpha * A);
  * prime    the online implicit PRM's per-token beta * log pi_phi / pi_ref (`prime_token_rewards`).
A row's tokens are one solution; the G solutions of one problem are G consecutive rows (a group).
Baselines per group (`leave_one_out`: PRIME's RLOO, exact for a reward at one token per row; or
`group_normalized`: GRPO's mean / std), returns as sums of later rewards (gamma = 1, `returns`), and
`whiten` over the batch's response tokens. `advantages` composes them per source, as PRIME does.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _groups(B: int, group: int) -> int:
    if group < 2:
        raise ValueError(f"a group needs at least 2 solutions per problem for a baseline, got {group}")
    if B % group:
        raise ValueError(f"{B} rows do not split into groups of {group} (the G solutions of a problem are consecutive)")
    return B // group


def place_step_rewards(step_rewards_BxT, step_pos_BxT, L: int) -> np.ndarray:
    """Returns [B, L] float64: each step's reward at its closing token (`step_pos`, -1 = padding)."""
    r = np.asarray(step_rewards_BxT, np.float64)
    pos = np.asarray(step_pos_BxT)
    if r.shape != pos.shape:
        raise ValueError(f"step rewards {r.shape} and step positions {pos.shape} differ")
    if pos.size and pos.max() >= L:
        raise ValueError(f"a step position {int(pos.max())} is outside the {L} tokens")
    out = np.zeros((r.shape[0], L))
    b, t = np.nonzero(pos >= 0)
    np.add.at(out, (b, pos[b, t]), r[b, t])
    return out


def last_token_mask(response_mask_BxL) -> np.ndarray:
    """Returns [B, L] bool: each row's last response token (where an outcome reward sits)."""
    mask = np.asarray(response_mask_BxL, bool)
    if not mask.any(1).all():
        raise ValueError(f"rows {np.nonzero(~mask.any(1))[0].tolist()} have no response token")
    out = np.zeros(mask.shape, bool)
    out[np.arange(mask.shape[0]), mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)] = True
    return out


def outcome_token_rewards(correct_B, response_mask_BxL) -> np.ndarray:
    """Returns [B, L]: each row's outcome (0/1 or a score) at its last response token, 0 elsewhere."""
    last = last_token_mask(response_mask_BxL)
    c = np.asarray(correct_B, np.float64)
    if c.shape != last.shape[:1]:
        raise ValueError(f"{c.size} outcomes for {last.shape[0]} rows")
    return np.where(last, c[:, None], 0.0)


def prm_step_rewards(step_probs_BxT, step_mask_BxT, credit: str = "min", temperature: float = 0.1) -> np.ndarray:
    """Returns [B, T] step rewards from P(step correct): r = 2p - 1, credited by `sum` (as is) or `min`
    (PURE: r_i * w_i with w = softmax(-r / temperature) over the row's steps, so that a row's summed
    reward is a soft minimum of its step rewards; masked steps get 0)."""
    p = np.asarray(step_probs_BxT, np.float64)
    m = np.asarray(step_mask_BxT, bool)
    if p.shape != m.shape:
        raise ValueError(f"step probabilities {p.shape} and mask {m.shape} differ")
    r = np.where(m, 2.0 * p - 1.0, 0.0)
    if credit == "sum":
        return r
    if credit != "min":
        raise ValueError(f"credit {credit!r}: give 'sum' or 'min' (PURE's min-form)")
    if temperature <= 0:
        raise ValueError(f"min-form temperature must be > 0, got {temperature}")
    z = np.where(m, -r / temperature, -np.inf)
    z = z - np.max(np.where(m.any(1, keepdims=True), z, 0.0), axis=1, keepdims=True)
    w = np.where(m, np.exp(z), 0.0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-300)
    return r * w


def pav_step_rewards(q_pi_BxT, q_mu_BxT, v0_mu_B, step_mask_BxT, alpha: float, q_weight: float = 1.0) -> np.ndarray:
    """Returns [B, T]: q_weight * Q^pi_t + alpha * A^mu_t per step, A^mu_t = Q^mu_t - Q^mu_{t-1} and
    Q^mu_{-1} = V^mu of the bare question (`v0_mu_B`); masked steps get 0. Masked steps must be a
    row's trailing padding (a step's advantage is against the step before it)."""
    q_pi = np.asarray(q_pi_BxT, np.float64)
    q_mu = np.asarray(q_mu_BxT, np.float64)
    m = np.asarray(step_mask_BxT, bool)
    v0 = np.asarray(v0_mu_B, np.float64)
    if not (q_pi.shape == q_mu.shape == m.shape) or v0.shape != m.shape[:1]:
        raise ValueError(f"Q^pi {q_pi.shape}, Q^mu {q_mu.shape}, mask {m.shape}, V^mu {v0.shape} do not match")
    if (m[:, 1:] & ~m[:, :-1]).any():
        raise ValueError("PAV rewards need each row's steps first and padding after (a step without its predecessor)")
    prev = np.concatenate([v0[:, None], q_mu[:, :-1]], axis=1)
    return np.where(m, q_weight * q_pi + alpha * (q_mu - prev), 0.0)


def prime_token_rewards(logp_BxL, ref_logp_BxL, response_mask_BxL, beta: float) -> np.ndarray:
    """Returns [B, L]: beta * (log pi_phi - log pi_ref) at each response token (PRIME's dense reward)."""
    lp, ref = np.asarray(logp_BxL, np.float64), np.asarray(ref_logp_BxL, np.float64)
    m = np.asarray(response_mask_BxL, bool)
    if not (lp.shape == ref.shape == m.shape):
        raise ValueError(f"log-probs {lp.shape}, reference {ref.shape} and mask {m.shape} differ")
    return np.where(m, beta * (lp - ref), 0.0)


def leave_one_out(rewards_BxL, mask_BxL, group: int) -> np.ndarray:
    """Returns [B, L]: PRIME's leave-one-out baseline applied to a token-reward source.

    With mean_j the mean of row j's rewards over its masked tokens, every masked entry r of row i
    becomes r * G / (G - 1) - sum_j mean_j / (G - 1) over its group of G rows, i.e.
    r - (sum_{j != i} mean_j + mean_i - r) / (G - 1); for one masked token per row (an outcome,
    mean_i = r) that is RLOO exactly: r_i - mean_{j != i} r_j. Unmasked entries are 0.
    """
    r = np.asarray(rewards_BxL, np.float64)
    m = np.asarray(mask_BxL, bool)
    if r.shape != m.shape:
        raise ValueError(f"rewards {r.shape} and mask {m.shape} differ")
    n = _groups(r.shape[0], group)
    if not m.any(1).all():
        raise ValueError(f"rows {np.nonzero(~m.any(1))[0].tolist()} have no rewarded token")
    mean_B = np.where(m, r, 0.0).sum(1) / m.sum(1)
    total = mean_B.reshape(n, group).sum(1).repeat(group)[:, None]
    return np.where(m, r * group / (group - 1) - total / (group - 1), 0.0)


def group_normalized(seq_rewards_B, group: int, eps: float = 1e-6) -> np.ndarray:
    """Returns [B]: GRPO's (r - mean) / (std + eps) within each group of `group` consecutive rows."""
    r = np.asarray(seq_rewards_B, np.float64)
    g = r.reshape(_groups(r.shape[0], group), group)
    return ((g - g.mean(1, keepdims=True)) / (g.std(1, keepdims=True) + eps)).reshape(-1)


def returns(rewards_BxL, response_mask_BxL) -> np.ndarray:
    """Returns [B, L]: at each response token the sum of the rewards from it to the end (gamma = 1)."""
    r = np.where(np.asarray(response_mask_BxL, bool), np.asarray(rewards_BxL, np.float64), 0.0)
    return np.where(np.asarray(response_mask_BxL, bool), np.cumsum(r[:, ::-1], axis=1)[:, ::-1], 0.0)


def whiten(x_BxL, mask_BxL, eps: float = 1e-8) -> np.ndarray:
    """Returns x standardised over the masked entries of the batch (mean 0, std 1); 0 elsewhere."""
    x, m = np.asarray(x_BxL, np.float64), np.asarray(mask_BxL, bool)
    if not m.any():
        raise ValueError("whiten: no masked entry")
    v = x[m]
    return np.where(m, (x - v.mean()) / (v.std() + eps), 0.0)


def advantages(
    sources: Mapping[str, tuple],
    response_mask_BxL,
    group: int,
    *,
    baseline: str = "rloo",
    normalize: bool = True,
) -> np.ndarray:
    """Returns [B, L] per-token advantages of the reward `sources`, {name: (rewards_BxL, mask_BxL, coef)}.

    baseline 'rloo' (PRIME): each source through `leave_one_out` on its own mask, scaled by its coef,
    summed, then `returns`; 'grpo': the sources' coef-weighted sums per row, `group_normalized`, given
    to every response token (outcome-style); 'none': the raw returns. `normalize` whitens the result
    over the batch's response tokens (PRIME's last step).
    """
    resp = np.asarray(response_mask_BxL, bool)
    if not sources:
        raise ValueError("advantages: no reward source")
    if baseline == "rloo":
        total = sum(coef * leave_one_out(r, m, group) for r, m, coef in sources.values())
        adv = returns(total, resp)
    elif baseline == "grpo":
        seq = sum(coef * np.where(m, r, 0.0).sum(1) for r, m, coef in sources.values())
        adv = np.where(resp, group_normalized(seq, group)[:, None], 0.0)
    elif baseline == "none":
        adv = returns(sum(coef * np.where(m, r, 0.0) for r, m, coef in sources.values()), resp)
    else:
        raise ValueError(f"baseline {baseline!r}: give 'rloo', 'grpo' or 'none'")
    return whiten(adv, resp) if normalize else adv
