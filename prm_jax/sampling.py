"""Batched sampling with a static KV cache: a compiled prefill, then a compiled `lax.while_loop` decode.

Prefixes of different lengths are left-padded (the padding is marked invalid in the cache, so every
row sees only its own tokens) and all rows advance in lockstep. Shapes are rounded up to buckets
(new-token count to a power of two, prefix length to a multiple of `LEN_BUCKET`, one prefix length per
chunk of `max_batch` rows, batch to 16 or `max_batch`) so that a search or labelling run compiles a
handful of programs: on a CPU a compile costs more than many padded rows. Copies of one prefix in a
round (K MC rollouts, a beam's children, N samples of a question) are prefilled once, in a program
apart from the decode loop's (a quarter of the batch's rows, or all of them), and the cache is copied to
each row; the prefill attends over the prefix's slots only, and the decode loop adds the new ones.
Temperature and top-p are traced scalars: changing them never recompiles (top-p below 1 runs programs of
its own, with the nucleus cut).

Modes: 'step' stops a row at the step marker or EOS (one more reasoning step: beam search, MC
rollouts one step at a time); 'full' stops only at EOS (a whole solution, or `max_new_tokens`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prm_jax import model as model_lib
from prm_jax import shapes
from tqdm.auto import tqdm

LEN_BUCKET = 64
SEGMENT = 64
MIN_BATCH = 16
# A round may run on an already-compiled program of a larger bucket (more rows, a longer prefix or
# new-token bucket) when that costs at most REUSE_RATIO times the exact bucket's rows x cache slots:
# on the 2-core CPU one compile (~3 s) costs ~200 decode steps of a 256-row batch, and the demo's
# tail rounds (a few rows still running, runaway solutions) each compiled a new shape.
REUSE_RATIO = 16
MAX_STOP_IDS = 4
# XLA's CPU backend compiles at LLVM level 3 by default. For the sampler's programs level 2 saves ~25%
# of each compile (the labelling stage's 5 prefill and 3 decode programs: ~5.6 -> ~4.2 s on the 2-core
# CPU) and runs the decode loop as fast. On the demo's five seeds it drew the same tokens; another
# summation order can move a log-prob by float32 rounding (benchmarks/NOTES.md). Other backends keep
# their defaults.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}
NUCLEUS_ITERS = 40  # bisection steps: the float32 interval is exhausted well before


@dataclasses.dataclass
class Samples:
    """Sampled continuations, one row per prefix (numpy, trimmed to the longest row).

    tokens_BxN: new tokens, `pad_id` after a row's end; the stop token (marker or EOS) is included.
    logprobs_BxN: log p(token | context) under the model at temperature 1 (0 after a row's end).
    lengths_B: number of new tokens per row, the stop token included.
    stopped_B: the row ended at a stop token (False: it ran out of `max_new_tokens`).
    ended_B: the row ended at EOS (the solution is complete).
    """

    tokens_BxN: np.ndarray
    logprobs_BxN: np.ndarray
    lengths_B: np.ndarray
    stopped_B: np.ndarray
    ended_B: np.ndarray

    def row(self, i: int) -> list[int]:
        """Returns row i's new tokens as a list, stop token included."""
        return self.tokens_BxN[i, : self.lengths_B[i]].tolist()

    @property
    def num_tokens(self) -> int:
        """Returns the number of generated tokens (the compute that token accounting counts)."""
        return int(self.lengths_B.sum())


def left_pad(prefixes: Sequence[Sequence[int]], length: int, pad_id: int):
    """Returns (tokens_BxP, positions_BxP, valid_BxP) with every prefix right-aligned at `length`."""
    b = len(prefixes)
    tokens = np.full((b, length), pad_id, np.int32)
    positions = np.zeros((b, length), np.int32)
    valid = np.zeros((b, length), bool)
    for i, p in enumerate(prefixes):
        n = len(p)
        if n == 0:
            raise ValueError(f"prefix {i} is empty: a prefix needs at least one token")
        if n > length:
            raise ValueError(f"prefix {i} has {n} tokens, more than the bucket length {length}")
        tokens[i, length - n :] = np.asarray(p, np.int32)
        positions[i, length - n :] = np.arange(n, dtype=np.int32)
        valid[i, length - n :] = True
    return tokens, positions, valid


def nucleus_logits(x_BxV, top_p):
    """Returns x with every token outside the top-p nucleus set to -inf.

    The nucleus is {x >= t*}, t* the largest threshold whose kept mass is still >= top_p: the same set
    as "the mass strictly before a token in sorted order is < top_p" (the top token always stays).
    Bisection on t costs NUCLEUS_ITERS fused passes over the logits instead of a full-vocabulary sort
    per row, which would dominate a decode step at a 150k vocabulary.
    """
    p_BxV = jax.nn.softmax(x_BxV, axis=-1)

    def mass(t_B):
        return jnp.sum(jnp.where(x_BxV >= t_B[:, None], p_BxV, 0.0), axis=-1)

    def bisect(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        ok = mass(mid) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    hi_B = jnp.max(x_BxV, axis=-1)
    lo_B, _ = jax.lax.fori_loop(0, NUCLEUS_ITERS, bisect, (jnp.min(x_BxV, axis=-1), hi_B))
    t_B = jnp.where(mass(hi_B) >= top_p, hi_B, lo_B)
    return jnp.where(x_BxV >= t_B[:, None], x_BxV, -jnp.inf)


def sample_next(logits_BxV, rng, temperature, top_p, nucleus: bool):
    """Returns (token_B, logprob_B): a draw at `temperature` from the top-p nucleus (argmax if T=0).

    The log-prob is the model's own (temperature 1, no nucleus), which is what the implicit PRM and
    any importance weighting need. `nucleus` (static) says whether top_p < 1: only then does the
    program carry the top-p cut (its value stays traced).
    """
    logits_BxV = logits_BxV.astype(jnp.float32)
    logp_BxV = jax.nn.log_softmax(logits_BxV, axis=-1)
    greedy_B = jnp.argmax(logits_BxV, axis=-1)
    scaled_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)

    masked_BxV = nucleus_logits(scaled_BxV, top_p) if nucleus else scaled_BxV
    drawn_B = jax.random.categorical(rng, masked_BxV, axis=-1)
    token_B = jnp.where(temperature > 0, drawn_B, greedy_B).astype(jnp.int32)
    return token_B, jnp.take_along_axis(logp_BxV, token_B[:, None], axis=-1)[:, 0]


def _prefill(cfg, params, tokens_BxP, positions_BxP, valid_BxP, cache, chunk: int):
    """Returns (the last position's logits [B, V], the cache holding the prefix).

    chunk 0: one decode call over the whole prefix (logits at every position, as training computes
    them). chunk > 0: the prefix in slices of `chunk` tokens, none through the vocabulary projection,
    then the projection of the last position alone: attention scores stay [B, chunk, M] and the
    [B, P, V] logits (5 GB at 64 x 256 rows of a 152k vocabulary in bf16) are never formed.
    """
    if not chunk:
        out, cache = model_lib.decode(cfg, params, tokens_BxP, positions_BxP, valid_BxP, cache)
        return out.logits[:, -1, :], cache
    p = tokens_BxP.shape[1]
    for s in range(0, p, chunk):  # static: P and chunk are Python ints
        sl = slice(s, min(s + chunk, p))
        out, cache = model_lib.decode(
            cfg, params, tokens_BxP[:, sl], positions_BxP[:, sl], valid_BxP[:, sl], cache, lm_head=False
        )
    w_DxV = model_lib.output_embedding(cfg, params)
    return jnp.einsum("bd,dv->bv", out.hidden[:, -1, :], w_DxV.astype(out.hidden.dtype)), cache


def _prefill_rows(cfg, prefill_chunk, params, tokens_UxP, positions_UxP, valid_UxP, src_B):
    """Returns (last_BxV, cache with P slots, next_pos_B) of B rows; jitted per (U, P, B).

    The U distinct prefixes are prefilled once; row b continues prefix src_B[b] (U = B: the rows
    themselves, in order, and src_B is not read). A program apart from the decode loop's, so that the
    number of distinct prefixes (K MC rollouts, a beam's children, N samples of one question share one)
    never multiplies the loop's compiles.
    """
    u, p = tokens_UxP.shape
    cache = model_lib.init_cache(cfg, u, p)
    last_BxV, cache = _prefill(cfg, params, tokens_UxP, positions_UxP, valid_UxP, cache, prefill_chunk)
    next_pos_B = positions_UxP[:, -1] + 1
    if u != src_B.shape[0]:  # static: copies of a prefix share its prefill
        last_BxV, next_pos_B = last_BxV[src_B], next_pos_B[src_B]
        cache = dict(cache, k=cache["k"][:, src_B], v=cache["v"][:, src_B], valid=cache["valid"][src_B])
    return last_BxV, cache, next_pos_B


def _decode_rows(
    cfg,
    pad_id,
    eos_id,
    new_bucket,
    nucleus,
    params,
    last_BxV,
    cache,
    next_pos_B,
    stop_ids_S,
    limit_B,
    temperature,
    top_p,
    rng,
):
    """Returns (tokens_BxN, logprobs_BxN, lengths_B, stopped_B, ended_B); jitted per (B, P, N) bucket.

    Continues the prefilled rows (`_prefill_rows`); the cache gains N empty slots here, after the
    prefill, so that the prefill attends over P slots, not P + N. Row b draws at most
    limit_B[b] <= N tokens (0: a filler row that never runs)."""
    b = limit_B.shape[0]
    cache = model_lib.extend_cache(cache, new_bucket)
    max_new = jnp.max(limit_B)

    def cond(state):
        i, done_B = state[0], state[5]
        return (i < max_new) & ~jnp.all(done_B)

    def body(state):
        i, toks, logps, last, cache, done, lengths, stopped, ended, pos, rng = state
        rng, sub = jax.random.split(rng)
        tok_B, logp_B = sample_next(last, sub, temperature, top_p, nucleus)
        live_B = ~done
        tok_B = jnp.where(live_B, tok_B, pad_id)
        toks = toks.at[:, i].set(tok_B)
        logps = logps.at[:, i].set(jnp.where(live_B, logp_B, 0.0))
        lengths = lengths + live_B.astype(jnp.int32)
        hit_B = live_B & jnp.any(tok_B[:, None] == stop_ids_S[None, :], axis=-1)
        stopped = stopped | hit_B
        ended = ended | (live_B & (tok_B == eos_id))
        done = done | hit_B | (lengths >= limit_B)
        out, cache = model_lib.decode(cfg, params, tok_B[:, None], pos[:, None], jnp.ones((b, 1), bool), cache)
        return (i + 1, toks, logps, out.logits[:, -1, :], cache, done, lengths, stopped, ended, pos + 1, rng)

    zeros_b = jnp.zeros((b,), bool)
    state = (
        jnp.int32(0),
        jnp.full((b, new_bucket), pad_id, jnp.int32),
        jnp.zeros((b, new_bucket), jnp.float32),
        last_BxV,
        cache,
        limit_B <= 0,
        jnp.zeros((b,), jnp.int32),
        zeros_b,
        zeros_b,
        next_pos_B,
        rng,
    )
    state = jax.lax.while_loop(cond, body, state)
    return state[1], state[2], state[6], state[7], state[8]


_COMPILED: dict[tuple, object] = {}
_CALLED: dict[tuple, set[tuple[int, int, int]]] = {}  # per (model, ids, top-p cut): the decode buckets run


def bucket_cost(s: tuple[int, int, int]) -> int:
    """Returns a (batch, prefix, new) decode bucket's cost: rows x cache slots."""
    return s[0] * (s[1] + s[2])


def pick_bucket(exact: tuple[int, int, int], compiled, ratio: float = REUSE_RATIO) -> tuple[int, int, int]:
    """Returns the (batch, prefix, new) decode bucket a round runs on: the cheapest compiled one that
    covers `exact` (every dimension at least as large) at most `ratio` times its `bucket_cost`, else
    `exact` (a new compile)."""
    fits = [
        s for s in compiled if all(a >= e for a, e in zip(s, exact)) and bucket_cost(s) <= ratio * bucket_cost(exact)
    ]
    return min(fits, key=lambda s: (bucket_cost(s), s)) if fits else exact


class Sampler:
    """Samples continuations of token prefixes from one model; compiled functions cached per bucket.

    Args:
      model_cfg, params: the policy (`prm_jax.model` contract).
      pad_id, eos_id, step_id: token ids; `step_id` is the step-end marker ('step' mode stops there).
      max_batch: rows per compiled call; larger requests are split (sorted by length to save padding).
      segment: new tokens per round: a row still running after it is re-queued (see `sample`).
      len_bucket: prefix lengths are rounded up to a multiple of it (one compile per bucket).
      prefill_chunk: prefill the prefix in slices of this many tokens, the vocabulary projection at
        its last position only (0: one call, logits at every position; see `_prefill`).
    """

    def __init__(
        self,
        model_cfg,
        params,
        *,
        pad_id: int,
        eos_id: int,
        step_id: int | None,
        max_batch: int = 256,
        segment: int = SEGMENT,
        len_bucket: int = LEN_BUCKET,
        prefill_chunk: int = 0,
    ):
        # The sampler never reads step scores: without the head its programs trace and compile less.
        self.cfg = dataclasses.replace(model_cfg, score_head=False, score_likelihood=False)
        self.params = {k: v for k, v in params.items() if k != "score_head"}
        self.pad_id, self.eos_id, self.step_id = int(pad_id), int(eos_id), step_id
        self.max_batch, self.segment, self.len_bucket = int(max_batch), int(segment), int(len_bucket)
        if prefill_chunk < 0:
            raise ValueError(f"prefill_chunk={prefill_chunk}: give a positive token count, or 0 for one call")
        self.prefill_chunk = int(prefill_chunk)
        self._compiled: dict[tuple, object] = {}  # the process-wide programs this sampler called
        self.tokens_generated = 0
        self.decode_steps = 0  # decode-loop iterations over all rounds (a round runs its longest row's count)
        self.seconds = 0.0
        self.shapes: set[tuple[int, int, int, int]] = set()  # (batch, prefix, new, prefill rows) buckets run

    def _program(self, key: tuple, fn):
        # One jitted function per key for the whole process: a second Sampler of the same policy (the
        # demo's search stage after its labelling stage) reuses the compiles.
        key = (self.cfg,) + key
        if key not in _COMPILED:
            opts = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
            _COMPILED[key] = jax.jit(functools.partial(fn, self.cfg, *key[1:-1]), compiler_options=opts)
        self._compiled[key] = _COMPILED[key]
        return _COMPILED[key]

    def _prefill_fn(self):
        return self._program((self.prefill_chunk, "prefill"), _prefill_rows)

    def _decode_fn(self, new_bucket: int, nucleus: bool):
        # Top-p sampling gets programs of its own: the bisection adds ~15% to a compile (0.35 of
        # ~2.3 s on the 2-core CPU), and labelling and the demo's search sample at top_p = 1.
        return self._program((self.pad_id, self.eos_id, new_bucket, nucleus, "decode"), _decode_rows)

    def _stop_ids(self, mode: str) -> np.ndarray:
        if mode == "step":
            if self.step_id is None:
                raise ValueError("mode 'step' needs a step marker id; this sampler has none")
            ids = [self.step_id, self.eos_id]
        elif mode == "full":
            ids = [self.eos_id]
        else:
            raise ValueError(f"unknown sampling mode {mode!r}: expected 'step' or 'full'")
        return np.asarray(ids + [-1] * (MAX_STOP_IDS - len(ids)), np.int32)

    def sample(
        self,
        prefixes: Sequence[Sequence[int]],
        rng,
        *,
        mode: str = "full",
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        desc: str | None = None,
    ) -> Samples:
        """Returns a `Samples` with one continuation per prefix (in the order given)."""
        if not prefixes:
            raise ValueError("sample() needs at least one prefix")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        stop_S = self._stop_ids(mode)
        prefixes = [tuple(np.asarray(p, np.int64).tolist()) for p in prefixes]
        n = len(prefixes)
        gen = [[] for _ in range(n)]  # new tokens so far
        lps = [[] for _ in range(n)]
        stopped, ended = np.zeros(n, bool), np.zeros(n, bool)
        pending = list(range(n))
        t0 = time.perf_counter()
        bar = tqdm(total=n, desc=desc, unit="row", leave=False, disable=desc is None or n <= self.max_batch)
        rnd = 0
        while pending:
            # A round: the shortest pending rows, at most `segment` new tokens each. Rows that neither
            # stopped nor used their budget go back to the queue with their new tokens as prefix (and
            # are re-prefilled), so a few long rows never keep a whole batch decoding padding.
            # Copies of one prefix sort next to each other, so that a round prefills them once.
            pending.sort(key=lambda i: (len(prefixes[i]) + len(gen[i]), prefixes[i], gen[i]))
            idx, pending = pending[: self.max_batch], pending[self.max_batch :]
            rows = [prefixes[i] + tuple(gen[i]) for i in idx]
            uniq = list(dict.fromkeys(rows))
            limits = [min(self.segment, max_new_tokens - len(gen[i])) for i in idx]
            new_bucket = shapes.pow2(max(limits), 8)
            p_len = shapes.multiple(max(len(r) for r in rows), self.len_bucket)
            b = self.max_batch if len(rows) > self.max_batch // 4 else shapes.pow2(len(rows), MIN_BATCH)
            nucleus = top_p < 1
            # the decode programs' own key: samplers of any prefill chunk share them
            called = _CALLED.setdefault((self.cfg, self.pad_id, self.eos_id, nucleus), set())
            # never more rows than this sampler's max_batch (its caller's memory bound)
            mine = {c for c in called if c[0] <= self.max_batch}
            b, p_len, new_bucket = pick_bucket((b, p_len, new_bucket), mine)
            called.add((b, p_len, new_bucket))
            # Prefill rows: a quarter of the batch when the distinct prefixes fit (K = 4 MC rollouts, a
            # beam's children, N samples of a question), else every row as itself. Two sizes, not a
            # power of two each: a prefill program compiles in ~0.8 s on the 2-core CPU, and 64 rows of
            # 128 tokens prefill in 0.04 s against 256 rows' 0.18 s.
            u = b // 4 if b > MIN_BATCH and len(uniq) <= b // 4 else b
            fill = b - len(rows)
            rows = rows + [rows[0]] * fill  # filler rows: a real prefix, never all-invalid, limit 0
            if u == b:  # every row prefilled as itself
                src = np.arange(b, dtype=np.int32)
            else:
                where = {r: j for j, r in enumerate(uniq)}
                src = np.asarray([where[r] for r in rows], np.int32)
                rows = uniq + [uniq[0]] * (u - len(uniq))
            toks, pos, valid = left_pad(rows, p_len, self.pad_id)
            model_lib.check_token_ids(self.cfg, toks, source="the sampler's prefixes (the policy's tokenizer)")
            self.shapes.add((b, p_len, new_bucket, u))
            last, cache, next_pos = self._prefill_fn()(self.params, toks, pos, valid, src)
            out = self._decode_fn(new_bucket, nucleus)(
                self.params,
                last,
                cache,
                next_pos,
                stop_S,
                np.asarray(limits + [0] * fill, np.int32),
                jnp.float32(temperature),
                jnp.float32(top_p),
                jax.random.fold_in(rng, rnd),
            )
            tok_BxN, lp_BxN, len_B, stop_B, end_B = (np.asarray(o) for o in out)
            self.decode_steps += int(len_B.max())
            for j, i in enumerate(idx):
                gen[i] += tok_BxN[j, : len_B[j]].tolist()
                lps[i] += lp_BxN[j, : len_B[j]].tolist()
                if stop_B[j] or len(gen[i]) >= max_new_tokens:
                    stopped[i], ended[i] = bool(stop_B[j]), bool(end_B[j])
                    bar.update(1)
                else:
                    pending.append(i)
            rnd += 1
        bar.close()
        self.seconds += time.perf_counter() - t0
        lengths = np.asarray([len(g) for g in gen], np.int32)
        width = max(1, int(lengths.max()))
        toks = np.full((n, width), self.pad_id, np.int32)
        logps = np.zeros((n, width), np.float32)
        for i in range(n):
            toks[i, : lengths[i]] = gen[i]
            logps[i, : lengths[i]] = lps[i]
        samples = Samples(toks, logps, lengths, stopped, ended)
        self.tokens_generated += samples.num_tokens
        return samples

    @property
    def tokens_per_second(self) -> float:
        """Returns generated tokens per wall-clock second over all calls so far (compiles included)."""
        return self.tokens_generated / max(self.seconds, 1e-9)


@dataclasses.dataclass
class Continuation:
    """One sampled continuation, decoded into steps.

    steps: the completed new steps (text without marker); a trailing piece cut by EOS without a
      marker counts as a step, a piece cut by `max_new_tokens` does not.
    ended: the continuation ended at EOS (the solution is complete).
    num_tokens: generated tokens (stop token included); logprob: their summed model log-prob.
    ids: the generated token ids themselves (stop token included): what RL scores the policy on.
    min_logprob: the least log-prob (temperature 1) of a generated token: a solution the policy makes
      only by drawing a token it rarely draws (what a verifier's argmax can be exploited by).
    """

    steps: list[str]
    ended: bool
    num_tokens: int
    logprob: float = 0.0
    ids: tuple = ()
    min_logprob: float = 0.0


class Policy:
    """A sampler plus the one rendering of `prm_jax.data.tokenize`: continues (problem, steps) prefixes.

    Prefixes are encoded with `tokenize.encode_prefix`, so a sampled solution re-encodes to the same
    tokens for the verifier. `answer_fn(steps)` parses a final answer (task-specific).
    """

    def __init__(self, sampler: Sampler, tokenizer, *, marker: str, chat_template: str | None = None, answer_fn=None):
        from prm_jax.data import tokenize  # data/ imports no tfds/grain at module level

        self._tok = tokenize
        self.sampler, self.tokenizer, self.marker = sampler, tokenizer, marker
        self.chat_template, self.answer_fn = chat_template, answer_fn
        m = tokenizer.marker_ids(marker)
        if sampler.step_id is not None and m != [sampler.step_id]:
            raise ValueError(
                f"marker {marker!r} encodes to {m}, but the sampler stops at "
                f"{sampler.step_id}; step mode needs a single-token marker"
            )

    def encode(self, problem: str, steps: Sequence[str]) -> np.ndarray:
        """Returns the prompt tokens for `problem` followed by `steps`, each with its marker."""
        return self._tok.encode_prefix(
            problem, list(steps), self.tokenizer, marker=self.marker, chat_template=self.chat_template
        )

    def answer(self, steps: Sequence[str]):
        """Returns the parsed final answer of a solution (None without an answer_fn or answer)."""
        return None if self.answer_fn is None else self.answer_fn(list(steps))

    def decode(self, ids: Sequence[int], stopped: bool) -> tuple[list[str], bool]:
        """Returns (steps, ended) of generated ids (stop token included)."""
        ids = list(ids)
        ended = bool(stopped and ids and ids[-1] == self.sampler.eos_id)
        if ended:
            ids = ids[:-1]
        steps, rest = self._tok.steps_from_ids(ids, self.tokenizer, marker=self.marker)
        if ended and rest:
            steps.append(self.tokenizer.decode(rest))
        return steps, ended

    def continue_from(
        self,
        problems: Sequence[str],
        prefixes: Sequence[Sequence[str]],
        rng,
        *,
        mode: str = "full",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        desc: str | None = None,
    ) -> list[Continuation]:
        """Returns one Continuation per (problem, prefix) pair, sampled in batches."""
        if len(problems) != len(prefixes):
            raise ValueError(f"{len(problems)} problems but {len(prefixes)} prefixes")
        if not problems:
            return []
        ids = [self.encode(p, s) for p, s in zip(problems, prefixes)]
        out = self.sampler.sample(
            ids, rng, mode=mode, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, desc=desc
        )
        conts = []
        for i in range(len(ids)):
            steps, ended = self.decode(out.row(i), bool(out.stopped_B[i]))
            row = out.row(i)
            lp = out.logprobs_BxN[i, : out.lengths_B[i]]
            conts.append(
                Continuation(
                    steps, ended, int(out.lengths_B[i]), float(lp.sum()), tuple(row), float(lp.min(initial=0.0))
                )
            )
        return conts


def load_policy(
    workdir: str | None = None,
    *,
    hf_dir: str | None = None,
    max_batch: int = 256,
    marker: str | None = None,
    answer_fn=None,
    answer_kind: str = "math",
) -> Policy:
    """Returns the Policy of a training workdir (its parameters only) or of a local HF folder.

    The tokenizer is the run's (`config.data.tokenizer`) or the folder's; the marker defaults to the
    one the run trained with (`data.marker`, or an exported folder's rendering file), else the
    tokenizer's (`tokenizers.default_marker`) and must be one token, the sampler's step stop. The
    answer parser defaults to the arithmetic task's for the char tokenizer, else
    `evaluate.extract_answer(steps joined by blank lines, answer_kind)`.
    """
    from prm_jax.data import arith
    from prm_jax.data import tokenizers

    if workdir:
        from prm_jax import loop

        cfg, params, config = loop.load_trained(workdir)
        tok = tokenizers.make_tokenizer(config.data)
        trained_marker = tokenizers.run_marker(config.data, tok)
    elif hf_dir:
        from prm_jax import hf

        cfg, params = hf.load_checkpoint(hf_dir)
        tok = tokenizers.HFTokenizer(hf_dir)
        trained_marker = tokenizers.load_rendering(hf_dir).get("marker")
    else:
        raise ValueError("load_policy: give a training workdir or an HF folder (hf_dir)")
    if answer_fn is None:
        if isinstance(tok, arith.CharTokenizer):
            answer_fn = arith.final_answer
        else:
            from prm_jax import evaluate

            answer_fn = lambda steps: evaluate.extract_answer("\n\n".join(steps), answer_kind)  # noqa: E731
    marker = marker or trained_marker or tokenizers.default_marker(tok)
    step_ids = tok.marker_ids(marker)
    smp = Sampler(
        cfg,
        params,
        pad_id=tok.pad_id,
        eos_id=tok.eos_id,
        step_id=step_ids[0] if len(step_ids) == 1 else None,
        max_batch=max_batch,
    )
    return Policy(smp, tok, marker=marker, answer_fn=answer_fn)
