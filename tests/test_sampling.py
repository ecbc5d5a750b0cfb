"""Sampler: greedy equals repeated full forwards, temperature / top-p distributions, stops, buckets."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prm_jax import model, sampling
from prm_jax.data.arith import CharTokenizer

TOK = CharTokenizer()


def _model(init_std=0.02, seed=0):
    cfg = model.ModelConfig.preset(
        "tiny", vocab_size=TOK.vocab_size, d_model=32, head_dim=8, mlp_dim=64, init_std=init_std
    )
    return cfg, jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.PRNGKey(seed))


@pytest.fixture(scope="module")
def tiny():
    # Largish weights: a far-from-uniform next-token distribution, so sampling errors would show.
    return _model(init_std=0.3, seed=3)


REF_LEN = 64


@functools.partial(jax.jit, static_argnums=0)
def _last_logits(cfg, params, buf_1xR, n):
    """Logits after the first n tokens of a right-padded buffer (causal: padding cannot leak back)."""
    return jax.lax.dynamic_index_in_dim(model.forward(cfg, params, buf_1xR).logits[0], n - 1, 0, False)


def _uncached_logprobs(cfg, params, prefix, tokens):
    """Returns log p(token | everything before it) of each of `tokens` after `prefix`, by full forwards."""
    seq = list(prefix) + list(tokens)
    buf = np.zeros((1, REF_LEN), np.int32)
    buf[0, : len(seq)] = seq
    return [float(jax.nn.log_softmax(_last_logits(cfg, params, buf, n))[seq[n]]) for n in range(len(prefix), len(seq))]


def _greedy_reference(cfg, params, prefix, n):
    """Returns greedy tokens and log-probs from full, uncached forwards over the growing sequence."""
    seq, logps = list(prefix), []
    for _ in range(n):
        buf = np.zeros((1, REF_LEN), np.int32)
        buf[0, : len(seq)] = seq
        logits = _last_logits(cfg, params, buf, len(seq))
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        tok = int(jnp.argmax(logits))
        seq.append(tok)
        logps.append(float(logp[tok]))
    return seq[len(prefix) :], logps


def test_greedy_matches_repeated_forward_with_left_padding(tiny):
    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6)  # ids never produced
    prefixes = [[1, 10, 11, 12], [1, 20], [1] + list(range(30, 70))]  # lengths 4, 2, 41: two buckets apart
    out = s.sample(prefixes, jax.random.PRNGKey(0), mode="full", max_new_tokens=12, temperature=0.0)
    assert out.lengths_B.tolist() == [12, 12, 12]
    assert not out.stopped_B.any() and not out.ended_B.any()
    for i, p in enumerate(prefixes):
        ref_toks, ref_logps = _greedy_reference(cfg, params, p, 12)
        assert out.row(i) == ref_toks
        np.testing.assert_allclose(out.logprobs_BxN[i], ref_logps, atol=1e-4)


@pytest.mark.parametrize("chunk", [16, 24])  # 24 does not divide the 64-token prefix bucket
def test_chunked_prefill_matches_repeated_forward(tiny, chunk):
    """Prefill in slices (the vocabulary projection at the last position only) changes nothing a
    caller sees: greedy tokens and log-probs equal full uncached forwards, with left padding."""
    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, prefill_chunk=chunk)
    prefixes = [[1, 10, 11, 12], [1] + list(range(30, 70))]
    out = s.sample(prefixes, jax.random.PRNGKey(0), mode="full", max_new_tokens=8, temperature=0.0)
    for i, p in enumerate(prefixes):
        ref_toks, ref_logps = _greedy_reference(cfg, params, p, 8)
        assert out.row(i) == ref_toks
        np.testing.assert_allclose(out.logprobs_BxN[i], ref_logps, atol=1e-4)
    with pytest.raises(ValueError, match="prefill_chunk"):
        sampling.Sampler(cfg, params, pad_id=0, eos_id=1, step_id=None, prefill_chunk=-1)


def test_tiny_top_p_is_greedy_at_any_temperature(tiny):
    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=0, eos_id=-5, step_id=-6)
    prefixes = [[1, 5, 6], [1, 7, 8, 9, 10]] * 4
    greedy = s.sample(prefixes, jax.random.PRNGKey(0), max_new_tokens=8, temperature=0.0)
    nucleus = s.sample(prefixes, jax.random.PRNGKey(1), max_new_tokens=8, temperature=2.0, top_p=1e-6)
    np.testing.assert_array_equal(greedy.tokens_BxN, nucleus.tokens_BxN)


def _first_token_freqs(s, prefix, n, temperature, top_p, seed):
    out = s.sample([prefix] * n, jax.random.PRNGKey(seed), max_new_tokens=1, temperature=temperature, top_p=top_p)
    return np.bincount(out.tokens_BxN[:, 0], minlength=s.cfg.vocab_size) / n


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.6)])
def test_first_token_frequencies_match_softmax(tiny, temperature, top_p):
    cfg, params = tiny
    prefix = [1, 12, 13, 14]
    buf = np.zeros((1, REF_LEN), np.int32)
    buf[0, : len(prefix)] = prefix
    logits = np.asarray(_last_logits(cfg, params, buf, len(prefix)), np.float64)
    p = np.exp((logits - logits.max()) / temperature)
    p /= p.sum()
    if top_p < 1.0:  # independent numpy nucleus: smallest set of top tokens with mass >= top_p
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p) + 1)]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    assert p.max() < 0.9, "the test model should not be near-deterministic"
    s = sampling.Sampler(cfg, params, pad_id=0, eos_id=-5, step_id=-6, max_batch=4096)
    freq = _first_token_freqs(s, prefix, 4096, temperature, top_p, seed=7)
    tv = 0.5 * np.abs(freq - p).sum()
    assert tv < 0.05, f"total variation {tv:.3f} between sampled and softmax frequencies"
    assert freq[p == 0].sum() == 0, "tokens outside the nucleus were sampled"


@pytest.mark.parametrize("top_p", [1e-6, 0.1, 0.5, 0.9, 0.999])
def test_nucleus_set_equals_sorted_cumsum_definition(top_p):
    # Flat (random-weight-like) and peaked rows over a large vocabulary, against a numpy sort.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (8, 5000)), rng.normal(0, 4.0, (8, 5000))]).astype(np.float32)
    got = np.isfinite(np.asarray(jax.jit(sampling.nucleus_logits)(jnp.asarray(x), top_p)))
    for row, keep in zip(x.astype(np.float64), got):
        p = np.exp(row - row.max())
        p /= p.sum()
        order = np.argsort(-p)
        want = np.zeros_like(keep)
        want[order[(np.cumsum(p[order]) - p[order]) < top_p]] = True
        # float32 sums may move the boundary by one token: allow that, nothing more.
        assert np.sum(want != keep) <= 1, (top_p, int(want.sum()), int(keep.sum()))
        assert keep[order[0]]


def test_stops_at_step_marker_and_eos(tiny):
    cfg, params = tiny
    prefix = [1, 10, 11, 12]
    ref, _ = _greedy_reference(cfg, params, prefix, 10)
    marker = ref[3]  # use the 4th greedy token as the "marker"; it first appears at index first
    first = ref.index(marker)
    s = sampling.Sampler(cfg, params, pad_id=0, eos_id=-5, step_id=marker)
    step = s.sample([prefix, prefix], jax.random.PRNGKey(0), mode="step", max_new_tokens=10, temperature=0)
    assert step.lengths_B.tolist() == [first + 1] * 2
    assert step.row(0) == ref[: first + 1] and step.stopped_B.all() and not step.ended_B.any()
    assert (step.tokens_BxN[:, first + 1 :] == 0).all()
    # The same token as EOS ends a 'full' sample; 'full' ignores the step marker.
    s_eos = sampling.Sampler(cfg, params, pad_id=0, eos_id=marker, step_id=-6)
    full = s_eos.sample([prefix], jax.random.PRNGKey(0), mode="full", max_new_tokens=10, temperature=0)
    assert full.row(0) == ref[: first + 1] and full.ended_B.all()
    no_stop = s.sample([prefix], jax.random.PRNGKey(0), mode="full", max_new_tokens=10, temperature=0)
    assert no_stop.row(0) == ref and not no_stop.stopped_B.any()


def _programs(cfg, kind: str | None = None) -> int:
    """Returns how many sampler programs (of `kind`: 'prefill' or 'decode') this process compiled for a
    model of config `cfg`."""
    return sum(f._cache_size() for k, f in sampling._COMPILED.items() if k[0] == cfg and kind in (None, k[-1]))


def test_shape_buckets_reuse_compiled_programs(tiny):
    cfg, params = tiny
    cfg = cfg.replace(init_std=cfg.init_std / 3)  # a config of its own: no program of another test's
    s = sampling.Sampler(cfg, params, pad_id=0, eos_id=-5, step_id=-6)
    s.sample([[1, 2, 3]] * 5, jax.random.PRNGKey(0), max_new_tokens=5)
    before = _programs(s.cfg)  # programs are shared by every sampler of this model in the process
    s.sample([[1, 2, 3, 4, 5, 6]] * 7, jax.random.PRNGKey(1), max_new_tokens=7, temperature=0.3)
    assert _programs(s.cfg) == before
    # top-p below 1 compiles the nucleus cut once; its value and the temperature are traced
    s.sample([[1, 2, 3, 4, 5, 6]] * 7, jax.random.PRNGKey(1), max_new_tokens=7, temperature=0.3, top_p=0.9)
    assert _programs(s.cfg) == before + 1
    s.sample([[1, 2, 3]] * 7, jax.random.PRNGKey(1), max_new_tokens=7, temperature=0.7, top_p=0.5)
    assert _programs(s.cfg) == before + 1
    again = sampling.Sampler(cfg, params, pad_id=0, eos_id=-5, step_id=-6)
    again.sample([[7, 8]] * 3, jax.random.PRNGKey(2), max_new_tokens=6)
    assert _programs(s.cfg) == before + 1  # a second sampler compiles nothing new
    assert s.tokens_generated == 5 * 5 + 7 * 7 * 3
    assert "score_head" not in s.params and not s.cfg.score_head  # the sampler never reads step scores


def test_pick_bucket_takes_the_cheapest_covering_program_within_the_ratio():
    exact = (16, 64, 8)  # cost 16 x 72 = 1152
    assert sampling.pick_bucket(exact, set()) == exact
    assert sampling.pick_bucket(exact, {(16, 64, 8)}) == exact
    # (16, 128, 8): 16 x 136 = 2176 < (32, 64, 8): 32 x 72 = 2304
    assert sampling.pick_bucket(exact, {(256, 128, 64), (32, 64, 8), (16, 128, 8)}) == (16, 128, 8)
    assert sampling.pick_bucket(exact, {(8, 128, 64), (16, 64, 4), (16, 32, 64)}) == exact  # none covers
    big = (256, 256, 64)  # cost 256 x 320 = 71 x exact's
    assert sampling.pick_bucket(exact, {big}) == exact
    assert sampling.pick_bucket(exact, {big}, ratio=100) == big
    brute = {(b, p, n) for b in (16, 32, 256) for p in (64, 128, 192) for n in (8, 16, 64)}
    want_of = (32, 100, 10)
    covers = [
        t
        for t in brute
        if all(x >= y for x, y in zip(t, want_of)) and t[0] * (t[1] + t[2]) <= sampling.REUSE_RATIO * 32 * 110
    ]
    want = min(covers, key=lambda t: (t[0] * (t[1] + t[2]), t))
    assert sampling.pick_bucket(want_of, brute) == want == (32, 128, 16)


def test_tail_round_reuses_a_larger_compiled_bucket_and_matches_reference(tiny, monkeypatch):
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})  # this test's record of compiled buckets only
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    long = [1] + [20 + i % 40 for i in range(69)]  # prefix bucket 128
    s.sample([long] * 16, jax.random.PRNGKey(0), mode="full", max_new_tokens=8, temperature=0.0)
    short = [[1, 10, 11], [1, 12], [1, 13, 14]]  # exact bucket (16, 64, 8): runs on (16, 128, 8)
    out = s.sample(short, jax.random.PRNGKey(1), mode="full", max_new_tokens=6, temperature=0.0)
    assert s.shapes == {(16, 128, 8, 16)}, s.shapes
    for i, p in enumerate(short):
        ref_toks, ref_logps = _greedy_reference(cfg, params, p, 6)
        assert out.row(i) == ref_toks
        np.testing.assert_allclose(out.logprobs_BxN[i], ref_logps, atol=1e-4)
    # a sampler with a smaller max_batch never takes a larger compiled batch (its memory bound)
    sampling._CALLED.clear()
    sampling._CALLED[(s.cfg, s.pad_id, s.eos_id, False)] = {(64, 64, 8)}  # on record: 64 rows
    wide = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=64)
    wide.sample(short, jax.random.PRNGKey(1), mode="full", max_new_tokens=6, temperature=0.0)
    assert wide.shapes == {(64, 64, 8, 16)}, wide.shapes  # the record is read where the bound allows
    small = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    small.sample(short, jax.random.PRNGKey(1), mode="full", max_new_tokens=6, temperature=0.0)
    assert small.shapes == {(16, 64, 8, 16)}, small.shapes


def test_samplers_of_another_prefill_chunk_reuse_the_decode_buckets_and_match_reference(tiny, monkeypatch):
    """The decode programs do not depend on the prefill chunk, so neither does their record: a tail
    round of a chunked-prefill sampler runs on the decode bucket another sampler compiled, and its greedy
    tokens and log-probs equal uncached forwards."""
    cfg, params = tiny
    cfg = cfg.replace(init_std=cfg.init_std / 4)  # a config of its own: no program of another test's
    monkeypatch.setattr(sampling, "_CALLED", {})
    whole = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    long = [1] + [20 + i % 40 for i in range(69)]  # prefix bucket 128
    whole.sample([long] * 16, jax.random.PRNGKey(0), mode="full", max_new_tokens=8, temperature=0.0)
    decode = _programs(whole.cfg, "decode")
    chunked = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16, prefill_chunk=32)
    short = [[1, 10, 11], [1, 12], [1, 13, 14]]  # exact bucket (16, 64, 8): runs on (16, 128, 8)
    out = chunked.sample(short, jax.random.PRNGKey(1), mode="full", max_new_tokens=6, temperature=0.0)
    assert chunked.shapes == {(16, 128, 8, 16)}, chunked.shapes
    assert _programs(whole.cfg, "decode") == decode
    for i, p in enumerate(short):
        ref_toks, ref_logps = _greedy_reference(cfg, params, p, 6)
        assert out.row(i) == ref_toks
        np.testing.assert_allclose(out.logprobs_BxN[i], ref_logps, atol=1e-4)


def test_chunks_get_their_own_length_bucket_and_match_reference(tiny, monkeypatch):
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})  # no bucket of an earlier test to reuse
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    short, long = [1, 10, 11], [1] + [20 + i % 40 for i in range(140)]  # two length buckets
    prefixes = [long] * 5 + [short] * 16  # sorted by length: 16 short rows, then a chunk of 5 long ones
    out = s.sample(prefixes, jax.random.PRNGKey(0), mode="full", max_new_tokens=6, temperature=0.0)
    lb = sampling.LEN_BUCKET
    assert s.shapes == {(16, lb, 8, 16), (16, -(-141 // lb) * lb, 8, 16)}, s.shapes
    ref = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    for p in (short, long):  # each alone: one chunk, its own bucket
        want = ref.sample([p], jax.random.PRNGKey(1), mode="full", max_new_tokens=6, temperature=0.0).row(0)
        assert all(out.row(i) == want for i, q in enumerate(prefixes) if q is p)


def test_copies_of_a_prefix_share_one_prefill_and_continue_as_the_model_says(tiny, monkeypatch):
    """Rows with the same prefix are prefilled once (the bucket's prefill rows < its batch), and every
    row's sampled tokens carry the log-probs of an uncached forward over its own prefix + tokens."""
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=256)
    prefixes = [[1, 10, 11]] * 40 + [[1, 20]] * 30 + [[1] + list(range(30, 50))] * 30  # 3 distinct, 100 rows
    out = s.sample(prefixes, jax.random.PRNGKey(4), mode="full", max_new_tokens=6, temperature=1.0)
    assert s.shapes == {(256, 64, 8, 64)}, s.shapes
    for first in (0, 40, 70):  # copies draw independently
        assert len({tuple(out.row(i)) for i in range(first, first + 30)}) > 5
    for i in range(0, 100, 7):
        want = _uncached_logprobs(cfg, params, prefixes[i], out.row(i))
        np.testing.assert_allclose(out.logprobs_BxN[i, : out.lengths_B[i]], want, atol=1e-4)


def test_few_distinct_prefixes_prefill_alone_and_reuse_the_decode_program(tiny, monkeypatch):
    """A round of copies (16 distinct prefixes x 16) after a round of 256 distinct rows prefills a
    quarter of the batch, not 256 rows, and runs the decode program already compiled for that bucket."""
    cfg, params = tiny
    cfg = cfg.replace(init_std=cfg.init_std / 2)  # a config of its own: no program of another test's
    monkeypatch.setattr(sampling, "_CALLED", {})
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=256)
    distinct = [[1, 10 + i % 50, 20 + i // 50] for i in range(256)]
    s.sample(distinct, jax.random.PRNGKey(0), mode="full", max_new_tokens=6)
    assert s.shapes == {(256, 64, 8, 256)}, s.shapes
    decode, prefill = _programs(s.cfg, "decode"), _programs(s.cfg, "prefill")
    copies = [[1, 10 + j, 5] for j in range(16) for _ in range(16)]
    out = s.sample(copies, jax.random.PRNGKey(1), mode="full", max_new_tokens=6)
    assert s.shapes == {(256, 64, 8, 256), (256, 64, 8, 64)}, s.shapes
    assert _programs(s.cfg, "decode") == decode and _programs(s.cfg, "prefill") == prefill + 1
    assert len({tuple(out.row(i)) for i in range(16)}) > 3  # copies still draw independently


def test_bad_input(tiny):
    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=0, eos_id=2, step_id=None)
    with pytest.raises(ValueError, match="empty"):
        s.sample([[1, 2], []], jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="step marker"):
        s.sample([[1, 2]], jax.random.PRNGKey(0), mode="step")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        s.sample([[1, 2]], jax.random.PRNGKey(0), mode="beam")
    with pytest.raises(ValueError, match="top_p"):
        s.sample([[1, 2]], jax.random.PRNGKey(0), top_p=0.0)
    with pytest.raises(ValueError, match="3 keys for 2 prefixes"):
        s.sample([[1, 2], [1, 3]], np.zeros((3, 2), np.uint32))


def test_a_requests_draws_depend_on_its_key_alone(tiny, monkeypatch):
    """Sampled (temperature 1) tokens of a request are the same whatever else is in the call, in what
    order, at what max_batch and segment (rounds, rows and buckets differ); one key for a call gives
    request i the key fold_in(rng, i); another key draws other tokens."""
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})
    mine = [[1, 10, 11], [1, 20], [1] + list(range(30, 50)), [1, 10, 11]]
    others = [[1, 12 + i % 7, 40 + i % 5] for i in range(40)]
    keys = sampling.fold_keys(jax.random.PRNGKey(7), np.arange(len(mine)))
    other_keys = sampling.fold_keys(jax.random.PRNGKey(8), np.arange(len(others)))
    kw = dict(mode="full", max_new_tokens=20, temperature=1.0)
    wide = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=256)
    alone = wide.sample(mine, keys, **kw)
    narrow = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16, segment=8)
    mixed = narrow.sample(
        others[:25] + mine[::-1] + others[25:], np.concatenate([other_keys[:25], keys[::-1], other_keys[25:]]), **kw
    )
    for i in range(len(mine)):
        assert alone.row(i) == mixed.row(25 + len(mine) - 1 - i)
    assert alone.row(0) != alone.row(3)  # two copies of one prefix, two keys: two draws
    one_key = wide.sample(mine, jax.random.PRNGKey(7), **kw)
    np.testing.assert_array_equal(one_key.tokens_BxN, alone.tokens_BxN)
    again = wide.sample(mine, jax.random.key(7), **kw)  # a typed key draws as its raw data does
    np.testing.assert_array_equal(again.tokens_BxN, alone.tokens_BxN)
    other = wide.sample(mine, jax.random.PRNGKey(9), **kw)
    assert any(other.row(i) != alone.row(i) for i in range(len(mine)))


def test_fold_keys_equals_jax_fold_in():
    rng = jax.random.PRNGKey(3)
    data = [0, 5, 2**31 - 1, 17]
    want = np.stack([np.asarray(jax.random.fold_in(rng, d)) for d in data])
    np.testing.assert_array_equal(sampling.fold_keys(rng, data), want)
    per_key = sampling.fold_keys(want, [1, 2, 3, 4])
    np.testing.assert_array_equal(per_key[2], np.asarray(jax.random.fold_in(want[2], 3)))
    with pytest.raises(ValueError, match="4 keys for 3 data values"):
        sampling.fold_keys(want, [1, 2, 3])


def test_policy_decodes_steps_and_renders_like_tokenize(tiny):
    from prm_jax.data import tokenize

    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=TOK.eos_id, step_id=TOK.step_id)
    pol = sampling.Policy(s, TOK, marker="<step>", answer_fn=lambda steps: steps[-1][-1:])
    np.testing.assert_array_equal(
        pol.encode("a = 1. b = a + 1. Find b.", ["b = 2"]),
        tokenize.encode_prefix("a = 1. b = a + 1. Find b.", ["b = 2"], TOK, marker="<step>"),
    )
    ids = TOK.encode("x = 1<step>y = 2<step><eos>")
    assert pol.decode(ids, stopped=True) == (["x = 1", "y = 2"], True)
    assert pol.decode(TOK.encode("x = 1<step>y ="), stopped=False) == (["x = 1"], False)
    assert pol.decode(TOK.encode("x = 1<step>y = 3<eos>"), stopped=True) == (["x = 1", "y = 3"], True)
    conts = pol.continue_from(
        ["a = 1. b = a + 1. Find b."] * 3, [[], ["b = 2"], []], jax.random.PRNGKey(0), mode="step", max_new_tokens=6
    )
    assert len(conts) == 3 and all(c.num_tokens <= 6 for c in conts)
    # its log-prob sum and least log-prob are those of the sampled tokens (checked against a forward above)
    ids = [pol.encode("a = 1. b = a + 1. Find b.", p) for p in ([], ["b = 2"], [])]
    raw = s.sample(ids, jax.random.PRNGKey(0), mode="step", max_new_tokens=6)
    for i, c in enumerate(conts):
        row = raw.logprobs_BxN[i, : raw.lengths_B[i]]
        assert c.logprob == pytest.approx(float(row.sum()), abs=1e-5)
        assert c.min_logprob == pytest.approx(float(row.min()), abs=1e-6) and c.min_logprob < 0
    with pytest.raises(ValueError, match="single-token marker"):
        sampling.Policy(s, TOK, marker="\n\n")


def test_rows_longer_than_a_segment_are_requeued_and_match_one_long_call(tiny, monkeypatch):
    """A row still running after `segment` tokens goes back to the queue with its tokens as prefix:
    greedy continuations equal those of a sampler whose segment covers the whole budget."""
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})  # no larger compiled bucket to reuse
    prefixes = [[1, 10, 11], [1, 12], [1, 13, 14, 15]] * 3
    long = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, segment=64)
    short = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, segment=8)
    # short first: long's (16, 64, 32) program would otherwise also serve short's 8-token rounds
    b = short.sample(prefixes, jax.random.PRNGKey(0), mode="full", max_new_tokens=30, temperature=0.0)
    a = long.sample(prefixes, jax.random.PRNGKey(0), mode="full", max_new_tokens=30, temperature=0.0)
    assert all(a.row(i) == b.row(i) for i in range(len(prefixes)))
    assert (a.lengths_B == 30).all() and (b.lengths_B == 30).all() and not b.stopped_B.any()
    np.testing.assert_allclose(a.logprobs_BxN, b.logprobs_BxN, atol=1e-4)
    assert {n for _, _, n, _ in short.shapes} == {8}  # four rounds of 8 new tokens (the last 6)
    assert short.decode_steps == long.decode_steps == 30  # 8 + 8 + 8 + 6 loop iterations, and one round of 30


def _list_schedule_steps(lengths, rows: int) -> int:
    """Returns the decode iterations of `rows` rows working through jobs of `lengths` tokens in order, a
    finished row taking the next job after the iteration that ended its own (lower rows first)."""
    ends = list(lengths[:rows])
    nxt, t = rows, 0
    while nxt < len(lengths):
        t += 1
        for r in range(rows):
            if ends[r] == t and nxt < len(lengths):
                ends[r] = t + lengths[nxt]
                nxt += 1
    return max(ends)


def test_continuous_batching_refills_finished_rows_and_matches_reference(tiny, monkeypatch):
    """60 jobs (12 prefixes x 5) on a 16-row batch run in one round: a row whose job stops at the marker
    takes the next job (its prefix's cache copied in) in the same loop. Greedy tokens equal uncached
    forwards, the loop runs exactly as many iterations as a list schedule of the jobs' lengths (fewer
    than rounds of 16 rows would), and sampled rows carry the log-probs of uncached forwards."""
    cfg, params = tiny
    monkeypatch.setattr(sampling, "_CALLED", {})
    bases = [[1, 10 + i, 20 + 2 * i] + [30 + i] * (i % 4) for i in range(12)]
    refs = [_greedy_reference(cfg, params, p, 12)[0] for p in bases]
    marker = int(np.bincount(np.concatenate(refs)).argmax())  # a token the greedy rows stop at, at varied lengths
    want = [r[: r.index(marker) + 1] if marker in r else r for r in refs]
    assert len({len(w) for w in want}) > 2, [len(w) for w in want]
    prefixes = [p for p in bases for _ in range(5)]
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=marker, max_batch=16)
    out = s.sample(prefixes, jax.random.PRNGKey(0), mode="step", max_new_tokens=12, temperature=0.0)
    assert [out.row(i) for i in range(60)] == [want[i // 5] for i in range(60)]
    assert {b for b, *_ in s.shapes} == {16} and len(s.shapes) == 1  # one round, 16 rows
    order = sorted(range(60), key=lambda i: (len(prefixes[i]), prefixes[i]))  # the sampler's job order
    lengths = [int(out.lengths_B[i]) for i in order]
    assert s.decode_steps == _list_schedule_steps(lengths, 16)
    assert s.decode_steps < sum(max(lengths[k : k + 16]) for k in range(0, 60, 16))
    hot = s.sample(prefixes, jax.random.PRNGKey(1), mode="step", max_new_tokens=12, temperature=1.0)
    assert len({tuple(hot.row(i)) for i in range(60)}) > 20
    for i in range(0, 60, 3):
        want = _uncached_logprobs(cfg, params, prefixes[i], hot.row(i))
        np.testing.assert_allclose(hot.logprobs_BxN[i, : hot.lengths_B[i]], want, atol=1e-4)


def test_list_schedule_reference_by_hand():
    # rows 0, 1 take jobs of 3 and 1 tokens; row 1 is free after iteration 1 and takes the 2-token job
    # (ends at 3), then both are free after 3: row 0 takes the 4-token job (ends at 7).
    assert _list_schedule_steps([3, 1, 2, 4], 2) == 7
    assert _list_schedule_steps([5], 16) == 5


def test_a_round_takes_at_most_max_batch_prefixes_and_one_length_bucket_past_the_batch(tiny):
    """`_take_round` on a sorted queue: the bank holds at most max_batch distinct prefixes, at most
    JOBS_PER_ROW x max_batch jobs, and past the first max_batch jobs only those of the first job's
    prefix-length bucket (brute force over the queue's prefixes)."""
    cfg, params = tiny
    s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6, max_batch=16)
    short = [(1, 10 + i) for i in range(20) for _ in range(3)]  # 20 distinct x 3 copies, bucket 64
    long = [(1,) + (7,) * 70] * 40  # one prefix, bucket 128
    for prefixes in (short, [short[0]] * 10 + long, [short[0]] * 200):
        gen = [[] for _ in prefixes]
        pending = sorted(range(len(prefixes)), key=lambda i: (len(prefixes[i]), prefixes[i]))
        idx, rest = s._take_round(pending, prefixes, gen)
        assert idx + rest == pending
        taken = [prefixes[i] for i in idx]
        assert len(set(taken)) <= 16 and len(idx) <= sampling.JOBS_PER_ROW * 16
        assert all(-(-len(p) // 64) == 1 for p in taken[16:])
        # maximal: the next job would break one of the rules
        if rest:
            nxt = prefixes[rest[0]]
            assert (
                len(set(taken) | {nxt}) > 16
                or len(idx) == sampling.JOBS_PER_ROW * 16
                or (len(idx) >= 16 and -(-len(nxt) // 64) != 1)
            )
    assert len(s._take_round(list(range(60)), short, [[]] * 60)[0]) == 48  # 16 prefixes x 3
    mixed = [short[0]] * 10 + long
    assert len(s._take_round(list(range(50)), mixed, [[]] * 50)[0]) == 16  # the long ones fill the batch only


def test_cpu_programs_compile_with_the_sampler_options_and_draw_the_same_tokens(tiny, monkeypatch):
    """On the CPU the sampler's programs compile with `CPU_COMPILER_OPTIONS` (an unknown option fails
    the compile, so they reach the compiler) and draw the same tokens as XLA's defaults, with log-probs
    equal to float32 rounding (another LLVM level may order a sum's terms differently)."""
    cfg, params = tiny
    prefixes = [[1, 10, 11], [1, 20], [1] + list(range(30, 50))] * 6

    def draw():
        monkeypatch.setattr(sampling, "_COMPILED", {})  # compile afresh under the options set now
        monkeypatch.setattr(sampling, "_CALLED", {})
        s = sampling.Sampler(cfg, params, pad_id=TOK.pad_id, eos_id=-5, step_id=-6)
        return s.sample(prefixes, jax.random.PRNGKey(2), mode="full", max_new_tokens=10, temperature=1.0)

    assert jax.default_backend() == "cpu"
    assert sampling.CPU_COMPILER_OPTIONS  # the options under test
    lowered = draw()
    monkeypatch.setattr(sampling, "CPU_COMPILER_OPTIONS", None)
    default = draw()
    np.testing.assert_array_equal(lowered.tokens_BxN, default.tokens_BxN)
    np.testing.assert_allclose(lowered.logprobs_BxN, default.logprobs_BxN, rtol=1e-6, atol=1e-6)
    assert len({tuple(lowered.row(i)) for i in range(0, 18, 3)}) > 1  # sampled, not one repeated row
    monkeypatch.setattr(sampling, "CPU_COMPILER_OPTIONS", {"xla_no_such_option": 1})
    with pytest.raises(Exception, match="xla_no_such_option"):
        draw()
