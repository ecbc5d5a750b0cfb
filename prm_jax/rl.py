"""On-policy RL with PRM rewards: rollouts -> rewards -> advantages -> a policy-gradient train step.

One iteration (`RL.iteration`): sample G solutions of each problem with the current policy (the
KV-cache sampler), grade them, turn the reward source's scores into per-token rewards
(`prm_jax.rewards`), baseline them per group (RLOO or GRPO) and take the `pg` objective's step (PPO
clip, optional KL to the reference) through the same sharded, jitted, donated train step as
training (`train.make_train_step`). Reward sources (`SOURCES`):

  outcome   the grader's 0/1 at the last token only;
  prm_sum   a frozen verifier's step rewards 2p - 1 summed (PURE's summation form) + the outcome;
  prm_min   the same credited by PURE's min-form (softmax(-r / T) weights) + the outcome;
  pav       Q^pi + alpha * A^mu per step from a Q^pi verifier and a PAV + the outcome;
  prime     an implicit PRM updated online on each batch's rollouts and outcomes (its CE loss, the
            `implicit_ce` objective's own train step), its per-token beta * log pi_phi / pi_ref as
            dense rewards + the outcome, each through PRIME's leave-one-out baseline.

A rollout's tokens are the ones the sampler produced (prompt + generated ids, stop token
included), so the log-probs the step trains on are of what was sampled.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from prm_jax import objectives, rewards, shapes

SOURCES = ("outcome", "prm_sum", "prm_min", "pav", "prime")
LEN_BUCKET = 64  # rollout rows are padded to a multiple of it (one compile per bucket)


@dataclasses.dataclass
class Rollouts:
    """One iteration's samples as a padded batch, with what each reward source reads.

    batch: tokens, positions, segment_ids, response_mask [B, L]; step_pos [B, T] (the token closing
    each step: its marker, or EOS for a last step cut by EOS), step_mask [B, T].
    """

    problems: list[str]
    steps: list[list[str]]
    correct: np.ndarray
    ended: np.ndarray
    batch: dict
    gen_tokens: int


def step_positions(gen_ids: Sequence[int], marker_ids: Sequence[int], eos_id: int, offset: int) -> list[int]:
    """Returns the token index (offset = the prompt's length) closing each step of generated ids: the
    last token of each marker, and the EOS of a trailing step that EOS cut (as `Policy.decode` parses)."""
    ids, m = list(gen_ids), list(marker_ids)
    ended = bool(ids) and ids[-1] == eos_id
    body = ids[:-1] if ended else ids
    pos, i, start = [], 0, 0
    while i + len(m) <= len(body):
        if body[i : i + len(m)] == m:
            pos.append(offset + i + len(m) - 1)
            i += len(m)
            start = i
        else:
            i += 1
    if ended and start < len(body):
        pos.append(offset + len(ids) - 1)
    return pos


def rollout(policy, problems: Sequence[str], gold: Sequence, grade: Callable, group: int, rng, **sample_kw) -> Rollouts:
    """Returns `group` sampled solutions of each problem (consecutive rows), graded, as a batch."""
    flat = [p for p in problems for _ in range(group)]
    gold_rep = [g for g in gold for _ in range(group)]
    conts = policy.continue_from(flat, [[] for _ in flat], rng, mode="full", **sample_kw)
    marker = policy.tokenizer.marker_ids(policy.marker)
    rows, spos = [], []
    for p, c in zip(flat, conts):
        prompt = [int(t) for t in policy.encode(p, [])]
        rows.append((prompt, list(c.ids)))
        spos.append(step_positions(c.ids, marker, policy.sampler.eos_id, len(prompt)))
    L = shapes.multiple(max(len(a) + len(b) for a, b in rows), LEN_BUCKET)
    T = shapes.pow2(max([len(s) for s in spos] + [1]), 1)
    B = len(rows)
    pad = policy.tokenizer.pad_id
    batch = {
        "tokens": np.full((B, L), pad, np.int32),
        "positions": np.zeros((B, L), np.int32),
        "segment_ids": np.zeros((B, L), np.int32),
        "response_mask": np.zeros((B, L), bool),
        "step_pos": np.full((B, T), -1, np.int32),
        "step_mask": np.zeros((B, T), bool),
    }
    for b, ((prompt, gen), sp) in enumerate(zip(rows, spos)):
        n = len(prompt) + len(gen)
        batch["tokens"][b, :n] = prompt + gen
        batch["positions"][b, :n] = np.arange(n)
        batch["segment_ids"][b, :n] = 1
        batch["response_mask"][b, len(prompt) : n] = True
        batch["step_pos"][b, : len(sp)] = sp
        batch["step_mask"][b, : len(sp)] = True
    answers = [policy.answer(c.steps) if c.ended else None for c in conts]
    correct = np.asarray([a is not None and bool(grade(a, g)) for a, g in zip(answers, gold_rep)], np.float64)
    return Rollouts(
        flat,
        [list(c.steps) for c in conts],
        correct,
        np.asarray([c.ended for c in conts]),
        batch,
        int(sum(c.num_tokens for c in conts)),
    )


def _step_matrix(values: Sequence[np.ndarray], T: int, counts: np.ndarray) -> np.ndarray:
    """Returns [B, T]: each row's per-step values, cut or padded to the row's parsed step count."""
    out = np.zeros((len(values), T))
    for b, (v, n) in enumerate(zip(values, counts)):
        v = np.asarray(v, np.float64)[:n]
        out[b, : len(v)] = v
    return out


def reward_sources(
    kind: str,
    r: Rollouts,
    *,
    group: int,
    verifiers: dict | None = None,
    outcome_coef: float = 1.0,
    process_coef: float = 1.0,
    alpha: float = 3.0,
    pure_temperature: float = 0.1,
    q_weight: float = 1.0,
    prime_logratio: np.ndarray | None = None,
    beta: float = 0.05,
) -> tuple[dict, dict]:
    """Returns ({name: (rewards_BxL, mask_BxL, coef)} for `rewards.advantages`, metrics) of a source.

    verifiers: {'prm'} for prm_sum / prm_min, {'qpi', 'pav'} for pav (`Verifier`s); prime_logratio
    [B, L] is log pi_phi - log pi_ref of the online implicit PRM on the rollout tokens.
    """
    if kind not in SOURCES:
        raise ValueError(f"reward source {kind!r}: give one of {SOURCES}")
    b = r.batch
    resp, L = b["response_mask"], b["tokens"].shape[1]
    last = rewards.last_token_mask(resp)
    out = {"outcome": (rewards.outcome_token_rewards(r.correct, resp), last, outcome_coef)}
    metrics = {"accuracy": float(r.correct.mean())}
    counts = b["step_mask"].sum(1)
    has_steps = counts > 0
    step_tok = np.zeros(resp.shape, bool)
    rows, ts = np.nonzero(b["step_mask"])
    step_tok[rows, b["step_pos"][rows, ts]] = True
    if kind in ("prm_sum", "prm_min"):
        probs = verifiers["prm"].step_scores(r.problems, r.steps)
        p = _step_matrix(probs, b["step_pos"].shape[1], counts)
        step_r = rewards.prm_step_rewards(p, b["step_mask"], "sum" if kind == "prm_sum" else "min", pure_temperature)
        placed = rewards.place_step_rewards(step_r, b["step_pos"], L)
        out["process"] = (placed, np.where(has_steps[:, None], step_tok, last), process_coef)
        metrics["prm_reward"] = float(step_r.sum(1).mean())
        metrics["prm_step_prob"] = float(p[b["step_mask"]].mean()) if b["step_mask"].any() else 0.0
    elif kind == "pav":
        T = b["step_pos"].shape[1]
        q_pi = _step_matrix(verifiers["qpi"].values(r.problems, r.steps), T, counts)
        q_mu = _step_matrix(verifiers["pav"].values(r.problems, r.steps), T, counts)
        # V^mu(question): the mean first-step Q^mu over the problem's G rollouts (as the PAV beam search)
        first = np.where(has_steps, q_mu[:, 0], np.nan).reshape(-1, group)
        v0 = np.nan_to_num(np.nanmean(np.where(np.isnan(first).all(1, keepdims=True), 0.0, first), 1)).repeat(group)
        step_r = rewards.pav_step_rewards(q_pi, q_mu, v0, b["step_mask"], alpha, q_weight)
        placed = rewards.place_step_rewards(step_r, b["step_pos"], L)
        out["process"] = (placed, np.where(has_steps[:, None], step_tok, last), process_coef)
        metrics["pav_reward"] = float(step_r.sum(1).mean())
    elif kind == "prime":
        if prime_logratio is None:
            raise ValueError("reward source 'prime' needs the online implicit PRM's log-ratios")
        tok_r = rewards.prime_token_rewards(prime_logratio, np.zeros_like(prime_logratio), resp, beta)
        out["process"] = (tok_r, resp, process_coef)
        metrics["prime_reward"] = float(np.where(resp, tok_r, 0.0).sum(1).mean())
    return out, metrics


def token_logprob_fn(model_cfg) -> Callable:
    """Returns jitted (params, batch) -> [B, L] log-probs of each token given the ones before it."""
    return jax.jit(lambda p, batch: objectives.token_logprobs(model_cfg, p, batch)[0])


def prime_batch(r: Rollouts, tokenizer, *, marker: str, chat_template=None, seq_len: int, max_steps: int) -> dict:
    """Returns the online implicit PRM's batch (objective implicit_ce) of the rollouts: each solution's
    steps rendered as training renders them, its outcome the grader's 0/1 (rollouts without a step
    are left out: they carry no response to score)."""
    from prm_jax.data import tokenize
    from prm_jax.data.records import Record

    exs = [
        tokenize.encode_example(
            Record(p, s, outcome=float(c)),
            tokenizer,
            marker=marker,
            max_len=seq_len,
            max_steps=max_steps,
            chat_template=chat_template,
            add_eos=True,
        )
        for p, s, c in zip(r.problems, r.steps, r.correct)
        if s
    ]
    if not exs:
        raise ValueError("no rollout has a step: nothing to update the implicit PRM on")
    return tokenize.pad_batch(exs, seq_len, max_steps, pad_id=tokenizer.pad_id, num_rows=len(r.problems))


class RL:
    """The policy's train state and step, the reward source and, for PRIME, the online implicit PRM.

    setup / state: a `train.setup` of objective 'pg' and its TrainState (the reference = the SFT
    policy); policy: a `sampling.Policy` whose sampler draws from `state.params` each iteration;
    verifiers: frozen Verifiers the source reads; prime: (setup, state) of objective implicit_ce
    (its reference = the SFT policy too) for source 'prime'.
    """

    def __init__(self, setup, state, policy, *, source: str, group: int, verifiers=None, prime=None, **reward_kw):
        from prm_jax import train

        if source not in SOURCES:
            raise ValueError(f"reward source {source!r}: give one of {SOURCES}")
        if setup.config.objective != "pg":
            raise ValueError(f"the policy's setup has objective {setup.config.objective!r}; RL trains 'pg'")
        if source == "prime" and prime is None:
            raise ValueError("reward source 'prime' needs the online implicit PRM (prime=(setup, state))")
        self.setup, self.state, self.policy = setup, state, policy
        self.source, self.group, self.verifiers = source, int(group), verifiers or {}
        self.prime, self.reward_kw = prime, reward_kw
        self.baseline = reward_kw.pop("baseline", "rloo")
        self._logp = token_logprob_fn(setup.model_cfg)
        self._train = train
        self._step = None
        self._prime_step = None

    def sync_sampler(self) -> None:
        """Points the policy's sampler at the current weights (the score head left out)."""
        self.policy.sampler.params = {k: v for k, v in self.state.params.items() if k != "score_head"}

    def iteration(self, problems, gold, grade, rng, **sample_kw) -> dict:
        """Runs one RL iteration on `problems`; returns its metrics (accuracy, rewards, the step's)."""
        self.sync_sampler()
        r = rollout(self.policy, problems, gold, grade, self.group, rng, **sample_kw)
        b = r.batch
        extra, logratio = {}, None
        if self.source == "prime":
            ps, pstate = self.prime
            pb = prime_batch(
                r,
                self.policy.tokenizer,
                marker=self.policy.marker,
                chat_template=self.policy.chat_template,
                seq_len=b["tokens"].shape[1] + 8,
                max_steps=max(b["step_pos"].shape[1], 1) * 2,
            )
            if self._prime_step is None:
                self._prime_step = self._train.make_train_step(ps, pb)
            pstate, pm = self._prime_step(pstate, pb)
            self.prime = (ps, pstate)
            logratio = np.asarray(self._logp(pstate.params, b)) - np.asarray(self._logp(pstate.ref_params, b))
            extra["prime_loss"] = float(pm["loss"])
        sources, metrics = reward_sources(
            self.source, r, group=self.group, verifiers=self.verifiers, prime_logratio=logratio, **self.reward_kw
        )
        adv = rewards.advantages(sources, b["response_mask"], self.group, baseline=self.baseline)
        pg = {k: b[k] for k in ("tokens", "positions", "segment_ids", "response_mask")}
        pg["advantages"] = adv.astype(np.float32)
        pg["old_logprobs"] = np.asarray(self._logp(self.state.params, pg), np.float32)
        if self._step is None:
            self._step = self._train.make_train_step(self.setup, pg)
        self.state, m = self._step(self.state, pg)
        out = {k: float(v) for k, v in jax.device_get(m).items()}
        out.update(metrics)
        out.update(extra)
        out["gen_tokens"] = r.gen_tokens
        out["mean_steps"] = float(b["step_mask"].sum(1).mean())
        out["complete"] = float(r.ended.mean())
        return out
