"""Scores several verifiers that run the same body with one forward per batch.

Score-head probes trained on one frozen body (BCE-PRM, exact-label PRM, ORM, PAV, the likelihood
baseline) hold bit-equal copies of it and differ only in `params['score_head']`; an implicit
PRM's reference can be that body too. Scored one by one they repeat the same forward; here the body runs
once per batch, every head reads its final hidden states, and the token log-probs the likelihood
feature needs double as the implicit PRMs' reference log-probs.

`share_bodies` makes equal bodies (and equal tokenizers) one object, by value, so grouping can go by
identity; `score_all` returns what each verifier's own `Verifier.score_all` returns (the same
functions of the same inputs: `objectives.step_logits`, `objectives.implicit_rewards_given_ref`) and
counts each verifier's tokens as its own scoring would. Verifiers that share nothing (another
kind, a public PRM's own `encoder`, another tokenizer or shape bucket) are scored on their own.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prm_jax import model as model_lib
from prm_jax import objectives

HEAD = "score_head"  # the one params entry a score probe does not share with its body


def _is_verifier(v) -> bool:
    # `prm_jax.verifier.Verifier` by what it offers (importing it here would close an import cycle
    # through search and evaluate, which call this module)
    return all(hasattr(v, a) for a in ("kind", "cfg", "params", "encoder", "batches", "collect", "outputs", "_encode"))


def _body(tree) -> dict:
    return {k: x for k, x in tree.items() if k != HEAD}


def _shared_tree(v):
    """Returns the params tree whose body `v` runs on the shared forward (None: it cannot share)."""
    if not _is_verifier(v) or v.encoder is not None or v.kind not in ("score", "implicit"):
        return None
    tree = v.params if v.kind == "score" else v.ref_params
    return tree if isinstance(tree, dict) else None


def _equal_trees(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb:
        return False
    for x, y in zip(la, lb):
        if x is y:
            continue
        if np.shape(x) != np.shape(y) or np.asarray(x).dtype != np.asarray(y).dtype:
            return False
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True


def share_bodies(verifiers: Sequence) -> int:
    """Returns how many verifiers were rebound: each body (params less the score head; an implicit
    PRM's reference) equal in value to an earlier one becomes that object, and likewise each
    tokenizer of the same type and state. Scores do not change; `score_all` can then share forwards."""
    bodies: list[dict] = []
    toks: list = []
    rebound = 0
    for v in verifiers:
        if not _is_verifier(v):
            continue
        changed = False
        for t in toks:
            if t is not v.tokenizer and type(t) is type(v.tokenizer) and vars(t) == vars(v.tokenizer):
                v.tokenizer, changed = t, True
                break
        else:
            toks.append(v.tokenizer)
        tree = _shared_tree(v)
        if tree is not None:
            body = _body(tree)
            same = next((b for b in bodies if _equal_trees(b, body)), None)
            if same is None:
                bodies.append(body)
            elif any(same[k] is not body[k] for k in body):
                new = dict(tree, **same)
                if v.kind == "score":
                    v.params = new
                else:
                    v.ref_params = new
                changed = True
        rebound += changed
    return rebound


def _group_key(v):
    tree = _shared_tree(v)
    if tree is None:
        return None
    body_cfg = v.cfg.replace(score_head=False, score_likelihood=False)
    leaves = tuple(id(x) for x in jax.tree.leaves(_body(tree)))
    return (
        body_cfg,
        leaves,
        id(v.tokenizer),
        v.marker,
        v.chat_template,
        v.max_len,
        v.max_steps,
        v.max_batch,
        v.logprob_chunk,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _group_scores(body_cfg, score_cfgs, implicit_cfgs, chunk, body, heads, implicit_params, betas, batch):
    """Returns (score members' sigmoid step logits, implicit members' step rewards), each a tuple of
    [B, T] float32, from one forward of `body` on `batch`."""
    out = model_lib.forward(
        body_cfg,
        body,
        batch["tokens"],
        segment_ids=batch["segment_ids"],
        positions=batch["positions"],
        lm_head=False,
    )
    logp = None
    if implicit_cfgs or any(c.score_likelihood for c in score_cfgs):
        logp = objectives.likelihood_logprobs(body_cfg, body, out.hidden, batch["tokens"], chunk)
    probs = tuple(
        jax.nn.sigmoid(objectives.step_logits(c, h, model_lib.score_head_logits(c, h, out.hidden), logp, batch))
        for c, h in zip(score_cfgs, heads)
    )
    num_steps = batch["step_pos"].shape[1]
    rewards = tuple(
        objectives.implicit_rewards_given_ref(c, p, logp, batch, num_steps, b, chunk)
        for c, p, b in zip(implicit_cfgs, implicit_params, betas)
    )
    return probs, rewards


def _score_group(members: Sequence, problems, steps_list) -> list[dict]:
    lead = members[0]
    exs = [lead._encode(p, s) for p, s in zip(problems, steps_list)]
    score = [v for v in members if v.kind == "score"]
    implicit = [v for v in members if v.kind == "implicit"]
    body_cfg = lead.cfg.replace(score_head=False, score_likelihood=False)
    body = _body(_shared_tree(lead))
    vals = {id(v): [None] * len(exs) for v in members}
    for idx, batch, _ in lead.batches(exs):
        keys = ("tokens", "positions", "segment_ids", "step_pos", "step_ids")
        probs, rewards = _group_scores(
            body_cfg,
            tuple(v.cfg for v in score),
            tuple(v.cfg for v in implicit),
            lead.logprob_chunk,
            body,
            tuple(v.params[HEAD] for v in score),
            tuple(v.params for v in implicit),
            tuple(jnp.float32(v.beta) for v in implicit),
            {k: batch[k] for k in keys},
        )
        for v, out in zip(score + implicit, probs + rewards):
            lead.collect(vals[id(v)], idx, out, exs)
    return [v.outputs(vals[id(v)], exs) for v in members]


def groups(verifiers: Sequence) -> list[list[int]]:
    """Returns the indices of `verifiers` in sets that share one forward (same body object, config
    less its heads, tokenizer, rendering and batching), in first-seen order; others alone."""
    found: dict = {}
    for j, v in enumerate(verifiers):
        key = _group_key(v)
        found.setdefault(("alone", j) if key is None else key, []).append(j)
    return list(found.values())


def score_all(verifiers: Sequence, problems: Sequence[str], steps_list: Sequence[Sequence[str]]) -> list[dict]:
    """Returns [v.score_all(problems, steps_list) for v in verifiers], with one forward per batch for
    each set of verifiers that share a body, tokenizer and rendering (see `share_bodies`)."""
    if len(problems) != len(steps_list):
        raise ValueError(f"{len(problems)} problems but {len(steps_list)} step lists")
    out: list = [None] * len(verifiers)
    for js in groups(verifiers):
        members = [verifiers[j] for j in js]
        if len(members) == 1:
            res = [members[0].score_all(problems, steps_list)]
        else:
            res = _score_group(members, problems, steps_list)
        for j, r in zip(js, res):
            out[j] = r
    return out


def values(verifiers: Sequence, problems: Sequence[str], steps_list: Sequence[Sequence[str]]) -> list[tuple]:
    """Returns [v.values(problems, steps_list, return_tokens=True) for v in verifiers] (per-solution
    prefix values and verifier tokens), sharing forwards among `Verifier`s as `score_all` does; any
    other object with that `values` method (a test's scripted verifier) is asked on its own."""
    own = [j for j, v in enumerate(verifiers) if _is_verifier(v) and len(problems)]
    outs = dict(zip(own, score_all([verifiers[j] for j in own], problems, steps_list)))
    return [
        (outs[j]["values"], outs[j]["tokens"]) if j in outs else v.values(problems, steps_list, return_tokens=True)
        for j, v in enumerate(verifiers)
    ]
