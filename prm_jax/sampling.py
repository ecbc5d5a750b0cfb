"""Batched sampling with a static KV cache: a compiled prefill, then a compiled `lax.while_loop` decode.

Prefixes of different lengths are left-padded (the padding is marked invalid in the cache, so every
row sees only its own tokens). Shapes are rounded up to buckets (new-token count to a power of two,
prefix length to a multiple of `LEN_BUCKET`, batch to 16 or `max_batch`) so that a search or labelling
run compiles a handful of programs: on a CPU a compile costs more than many padded rows. A round's
distinct prefixes (the K MC rollouts of a step, a beam's children, the N samples of a question share
one) are prefilled once, in a program apart from the decode loop's, into a bank (a quarter of the
batch's rows, or all of them); the prefill attends over the prefix's slots only. The decode loop runs
continuous batching: B rows in lockstep work through up to JOBS_PER_ROW x B jobs, and a row whose job
stopped takes the next one in the same loop (the bank's slots copied into it, a per-row cache end), so
short rows never leave the batch decoding padding while a long one runs. Temperature and top-p are
traced scalars: changing them never recompiles (top-p below 1 runs programs of its own, with the
nucleus cut). Every request has a key of its own (`request_keys`), and its token t draws with
fold_in(key, t): what a request draws never depends on which rows, round, bucket or `max_batch` it
ran in, and two callers that key a prefix alike (full MC and OmegaPRM, `labeling.step_keys`) draw
the same rollouts from it.

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
# Continuous batching (`_decode_rows`): a round holds up to JOBS_PER_ROW jobs per batch row, and at
# most REFILL finished rows take a new job per decode step (each copies its prefix's cache slots). On
# the demo's labelling calls (seed 0's policy, 1,024 solutions + their MC rollouts) 8 jobs per row cut
# the decode-loop iterations from 2,159 (one job per row) to 1,662 (4 per row: 1,788) and the compiled
# shapes from 5 to 4; a refill step costs ~10% more than a plain one (benchmarks/NOTES.md).
JOBS_PER_ROW = 8
REFILL = 16
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


def sample_next(logits_BxV, keys_Bx2, temperature, top_p, nucleus: bool):
    """Returns (token_B, logprob_B): a draw at `temperature` from the top-p nucleus (argmax if T=0),
    row b's with its own key keys_Bx2[b].

    The log-prob is the model's own (temperature 1, no nucleus), which is what the implicit PRM and
    any importance weighting need. `nucleus` (static) says whether top_p < 1: only then does the
    program carry the top-p cut (its value stays traced).
    """
    logits_BxV = logits_BxV.astype(jnp.float32)
    logp_BxV = jax.nn.log_softmax(logits_BxV, axis=-1)
    greedy_B = jnp.argmax(logits_BxV, axis=-1)
    scaled_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)

    masked_BxV = nucleus_logits(scaled_BxV, top_p) if nucleus else scaled_BxV
    drawn_B = jax.vmap(jax.random.categorical)(keys_Bx2, masked_BxV)
    token_B = jnp.where(temperature > 0, drawn_B, greedy_B).astype(jnp.int32)
    return token_B, jnp.take_along_axis(logp_BxV, token_B[:, None], axis=-1)[:, 0]


def raw_keys(rng):
    """Returns `rng` as raw uint32 key data ([..., 2] for threefry): typed keys unwrapped, raw keys
    (a jax or numpy array) as they are."""
    if isinstance(rng, jax.Array) and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return rng


@jax.jit
def _fold(keys_Nx2, data_N):
    return jax.vmap(jax.random.fold_in)(keys_Nx2, data_N)


def fold_keys(keys, data) -> np.ndarray:
    """Returns [N, 2] uint32 keys fold_in(keys[n], data[n]) (`keys` one key for all, or N keys)."""
    data = np.asarray(data, np.int64).reshape(-1)
    keys = np.asarray(raw_keys(keys))
    n = len(data)
    if keys.ndim == 1:
        keys = np.broadcast_to(keys, (n,) + keys.shape)
    if keys.shape[0] != n:
        raise ValueError(f"fold_keys: {keys.shape[0]} keys for {n} data values")
    m = shapes.pow2(max(n, 1), 16)  # a handful of compiled sizes, whatever N is
    pad = lambda x: np.concatenate([x, np.zeros((m - n,) + x.shape[1:], x.dtype)])
    return np.asarray(_fold(pad(keys), pad(data.astype(np.uint32))))[:n]


def request_keys(rng, n: int) -> np.ndarray:
    """Returns the [n, 2] uint32 keys of n requests: `rng` itself when it holds n keys, else
    fold_in(rng, i) for request i."""
    keys = np.asarray(raw_keys(rng))
    if keys.ndim == 2:
        if keys.shape[0] != n:
            raise ValueError(f"{keys.shape[0]} keys for {n} prefixes; give one key or one per prefix")
        return keys.astype(np.uint32)
    return fold_keys(keys, np.arange(n))


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


def _prefill_rows(cfg, prefill_chunk, batch, params, tokens_UxP, positions_UxP, valid_UxP):
    """Returns the prefilled bank of `batch` rows (last_BxV, cache with P slots, next_pos_B); jitted per
    (U, P, batch).

    The U distinct prefixes of a round are prefilled once (K MC rollouts, a beam's children, N samples
    of one question share one); rows U.. of the bank are padding that no job reads. A program apart
    from the decode loop's, so that the number of distinct prefixes never multiplies the loop's
    compiles.
    """
    u, p = tokens_UxP.shape
    cache = model_lib.init_cache(cfg, u, p)
    last_UxV, cache = _prefill(cfg, params, tokens_UxP, positions_UxP, valid_UxP, cache, prefill_chunk)
    next_pos_U = positions_UxP[:, -1] + 1
    if u != batch:  # static: a bank of `batch` rows, so that the decode program never depends on U
        pad = lambda x, axis: jnp.pad(x, [(0, batch - u) if a == axis else (0, 0) for a in range(x.ndim)])
        last_UxV, next_pos_U = pad(last_UxV, 0), pad(next_pos_U, 0)
        cache = dict(cache, k=pad(cache["k"], 1), v=pad(cache["v"], 1), valid=pad(cache["valid"], 0))
    return last_UxV, cache, next_pos_U


def _refill(bank, bank_last_UxV, bank_pos_U, src_J, limit_J, rows_R, next_R, state):
    """Returns the decode loop's row state with row rows_R[i] restarted on job next_R[i] (rows_R = B:
    no row; the scatter drops it): the bank's P prefix slots copied in, its last logits, position and
    limit set, its token count 0."""
    cache, last, pos, job, count, limit, done = state
    p = bank["valid"].shape[1]
    src_R = src_J[next_R]
    cache = dict(
        cache,
        k=cache["k"].at[:, rows_R, :, :, :p].set(bank["k"][:, src_R], mode="drop"),
        v=cache["v"].at[:, rows_R, :, :, :p].set(bank["v"][:, src_R], mode="drop"),
        valid=cache["valid"].at[rows_R, :p].set(bank["valid"][src_R], mode="drop"),
    )
    last = last.at[rows_R].set(bank_last_UxV[src_R].astype(last.dtype), mode="drop")
    pos = pos.at[rows_R].set(bank_pos_U[src_R], mode="drop")
    job = job.at[rows_R].set(next_R, mode="drop")
    count = count.at[rows_R].set(0, mode="drop")
    limit = limit.at[rows_R].set(limit_J[next_R], mode="drop")
    done = done.at[rows_R].set(False, mode="drop")
    return cache, last, pos, job, count, limit, done


def _decode_rows(
    cfg,
    pad_id,
    eos_id,
    new_bucket,
    nucleus,
    params,
    bank_last_UxV,
    bank,
    bank_pos_U,
    src_J,
    limit_J,
    key_Jx2,
    offset_J,
    stop_ids_S,
    temperature,
    top_p,
):
    """Returns (tokens_JxN, logprobs_JxN, lengths_J, stopped_J, ended_J, iterations); jitted per
    (B, P, N) bucket, with J = JOBS_PER_ROW * B jobs.

    Job j's new token t draws with fold_in(key_Jx2[j], offset_J[j] + t) (`offset_J`: the tokens its
    request drew in earlier rounds), so what a request draws never depends on the rows, round or
    batch it runs in.

    Continuous batching: B rows decode in lockstep, job j continues bank prefix src_J[j] for at most
    limit_J[j] <= N tokens (0: a filler job, after the real ones), and a row whose job has ended takes
    the next job in the same loop: the bank's prefix slots are copied into the row (at most REFILL rows
    per step) and its new tokens restart after them (a per-row cache end, `model_lib.decode`). So rows
    that stop early never leave the batch decoding padding while a long row runs.
    """
    b, j = bank_pos_U.shape[0], src_J.shape[0]
    p = bank["valid"].shape[1]
    n_jobs = jnp.sum(limit_J > 0)
    r = min(REFILL, b)

    first_B = jnp.arange(b)  # jobs 0..B-1 start in rows 0..B-1
    src_B = src_J[:b]
    cache = dict(
        k=bank["k"][:, src_B], v=bank["v"][:, src_B], valid=bank["valid"][src_B], end=jnp.full((b,), p, jnp.int32)
    )
    cache = model_lib.extend_cache(cache, new_bucket)
    m = p + new_bucket

    def cond(state):
        return ~jnp.all(state[10])

    def body(state):
        i, toks, logps, lengths, stopped, ended, last, cache, job, count, done, limit, pos, q = state
        keys_Bx2 = jax.vmap(jax.random.fold_in)(key_Jx2[job], offset_J[job] + count)
        tok_B, logp_B = sample_next(last, keys_Bx2, temperature, top_p, nucleus)
        live_B = ~done
        tok_B = jnp.where(live_B, tok_B, pad_id)
        at_B = jnp.where(live_B, job, j)  # finished rows write nowhere (index j is dropped)
        toks = toks.at[at_B, count].set(tok_B, mode="drop")
        logps = logps.at[at_B, count].set(logp_B, mode="drop")
        lengths = lengths.at[at_B].add(1, mode="drop")
        hit_B = live_B & jnp.any(tok_B[:, None] == stop_ids_S[None, :], axis=-1)
        stopped = stopped.at[at_B].set(hit_B, mode="drop")
        ended = ended.at[at_B].set(hit_B & (tok_B == eos_id), mode="drop")
        cache = dict(cache, end=jnp.minimum(p + count, m - 1))
        count = count + live_B.astype(jnp.int32)
        done = done | hit_B | (count >= limit)
        out, cache = model_lib.decode(cfg, params, tok_B[:, None], pos[:, None], jnp.ones((b, 1), bool), cache)
        last, pos = out.logits[:, -1, :], pos + 1
        # Refill: the first r finished rows take the next jobs. The copy of the bank's slots runs only on
        # steps where a row takes one (not while every row still runs, nor in a round's tail).
        rows_R = jnp.nonzero(done, size=r, fill_value=b)[0]
        next_R = q + jnp.arange(r)
        ok_R = (rows_R < b) & (next_R < n_jobs)
        refill = (cache, last, pos, job, count, limit, done)
        cache, last, pos, job, count, limit, done = jax.lax.cond(
            jnp.any(ok_R),
            functools.partial(_refill, bank, bank_last_UxV, bank_pos_U, src_J, limit_J),
            lambda *a: a[2],
            jnp.where(ok_R, rows_R, b),
            jnp.minimum(next_R, j - 1),
            refill,
        )
        q = q + jnp.sum(ok_R)
        return (i + 1, toks, logps, lengths, stopped, ended, last, cache, job, count, done, limit, pos, q)

    limit_B = limit_J[:b]
    zeros_j = jnp.zeros((j,), bool)
    state = (
        jnp.int32(0),
        jnp.full((j, new_bucket), pad_id, jnp.int32),
        jnp.zeros((j, new_bucket), jnp.float32),
        jnp.zeros((j,), jnp.int32),
        zeros_j,
        zeros_j,
        bank_last_UxV[src_B],
        cache,
        first_B,
        jnp.zeros((b,), jnp.int32),
        limit_B <= 0,
        limit_B,
        bank_pos_U[src_B],
        jnp.minimum(n_jobs, b),
    )
    state = jax.lax.while_loop(cond, body, state)
    return state[1], state[2], state[3], state[4], state[5], state[0]


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
        # decode-loop iterations over all rounds (continuous batching: a list schedule of each round's jobs)
        self.decode_steps = 0
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

    def _prefill_fn(self, batch: int):
        return self._program((self.prefill_chunk, batch, "prefill"), _prefill_rows)

    def _take_round(self, pending: list[int], prefixes, gen) -> tuple[list[int], list[int]]:
        """Returns (the jobs of the next round, the rest) from `pending` (sorted by length): at most
        JOBS_PER_ROW * max_batch jobs over at most max_batch distinct prefixes (the bank), and past
        the first max_batch jobs only those of the first job's length bucket (a longer prefix bucket
        would make every row attend over more slots)."""
        first = shapes.multiple(len(prefixes[pending[0]]) + len(gen[pending[0]]), self.len_bucket)
        seen: set = set()
        n = 0
        for i in pending:
            row = prefixes[i] + tuple(gen[i])
            if row not in seen and len(seen) == self.max_batch:
                break
            if n >= self.max_batch and (
                n >= JOBS_PER_ROW * self.max_batch
                or shapes.multiple(len(prefixes[i]) + len(gen[i]), self.len_bucket) != first
            ):
                break
            seen.add(row)
            n += 1
        return pending[:n], pending[n:]

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
        """Returns a `Samples` with one continuation per prefix (in the order given).

        `rng`: one key (prefix i draws with fold_in(rng, i)) or one key per prefix ([n, 2] raw keys).
        Token t of prefix i draws with fold_in(its key, t), so a request's tokens depend on its key
        alone, never on the batch, round or bucket it lands in (what common random numbers between
        two labellers need, and what keeps a run's draws when `max_batch` changes).
        """
        if not prefixes:
            raise ValueError("sample() needs at least one prefix")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        stop_S = self._stop_ids(mode)
        prefixes = [tuple(np.asarray(p, np.int64).tolist()) for p in prefixes]
        n = len(prefixes)
        keys_n = request_keys(rng, n)
        gen = [[] for _ in range(n)]  # new tokens so far
        lps = [[] for _ in range(n)]
        stopped, ended = np.zeros(n, bool), np.zeros(n, bool)
        pending = list(range(n))
        t0 = time.perf_counter()
        bar = tqdm(total=n, desc=desc, unit="row", leave=False, disable=desc is None or n <= self.max_batch)
        while pending:
            # A round: the shortest pending rows (jobs), at most `segment` new tokens each, decoded by a
            # batch of rows that take the next job as soon as theirs ends (`_decode_rows`). Jobs that
            # neither stopped nor used their budget go back to the queue with their new tokens as
            # prefix (and are re-prefilled), so a few long rows never keep a batch decoding padding.
            # Copies of one prefix sort next to each other, so that a round prefills them once.
            pending.sort(key=lambda i: (len(prefixes[i]) + len(gen[i]), prefixes[i], gen[i]))
            idx, pending = self._take_round(pending, prefixes, gen)
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
            # Prefill rows (the bank): a quarter of the batch when the distinct prefixes fit (K = 4 MC
            # rollouts, a beam's children, N samples of a question), else every row. Two sizes, not a
            # power of two each: a prefill program compiles in ~0.8 s on the 2-core CPU, and 64 rows of
            # 128 tokens prefill in 0.04 s against 256 rows' 0.18 s.
            u = b // 4 if b > MIN_BATCH and len(uniq) <= b // 4 else b
            where = {r: j for j, r in enumerate(uniq)}
            n_jobs = JOBS_PER_ROW * b
            src = np.zeros(n_jobs, np.int32)
            src[: len(rows)] = [where[r] for r in rows]
            lim = np.zeros(n_jobs, np.int32)  # filler jobs: limit 0, after the real ones
            lim[: len(rows)] = limits
            key = np.zeros((n_jobs, keys_n.shape[1]), np.uint32)
            key[: len(rows)] = keys_n[idx]
            off = np.zeros(n_jobs, np.int32)
            off[: len(rows)] = [len(gen[i]) for i in idx]
            bank_rows = uniq + [uniq[0]] * (u - len(uniq))  # filler: a real prefix, never all-invalid
            toks, pos, valid = left_pad(bank_rows, p_len, self.pad_id)
            model_lib.check_token_ids(self.cfg, toks, source="the sampler's prefixes (the policy's tokenizer)")
            self.shapes.add((b, p_len, new_bucket, u))
            last, bank, next_pos = self._prefill_fn(b)(self.params, toks, pos, valid)
            out = self._decode_fn(new_bucket, nucleus)(
                self.params,
                last,
                bank,
                next_pos,
                src,
                lim,
                key,
                off,
                stop_S,
                jnp.float32(temperature),
                jnp.float32(top_p),
            )
            tok_JxN, lp_JxN, len_J, stop_J, end_J, iters = (np.asarray(o) for o in out)
            self.decode_steps += int(iters)
            for j, i in enumerate(idx):
                gen[i] += tok_JxN[j, : len_J[j]].tolist()
                lps[i] += lp_JxN[j, : len_J[j]].tolist()
                if stop_J[j] or len(gen[i]) >= max_new_tokens:
                    stopped[i], ended[i] = bool(stop_J[j]), bool(end_J[j])
                    bar.update(1)
                else:
                    pending.append(i)
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
