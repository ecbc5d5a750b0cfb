"""Rendering, encoding (label placement token by token), truncation, prefix identity, padding, packing."""

import numpy as np
import pytest

from prm_jax.data.arith import CharTokenizer
from prm_jax.data.records import Record
from prm_jax.data import tokenize as T
from prm_jax.data.tokenizers import HFTokenizer, make_tokenizer

PROBLEM = "a = 12, b = 7, c = 3. d = a + b, e = d * 3, f = e - c. Find f."
STEPS = ["d = a + b = 12 + 7 = 19", "e = d * 3 = 19 * 3 = 57", "f = e - c = 57 - 3 = 53"]
REC = Record(PROBLEM, STEPS, [1.0, 1.0, 0.0], outcome=0.0, answer="54", source="t", id="r0")


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    """A tiny byte-level BPE trained here (no hub), saved and loaded from a local folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<extra_0>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator([PROBLEM, *STEPS, "ки Step 1: hello world\n\n"] * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<extra_0>"],
    )
    fast.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    d = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(str(d))
    return make_tokenizer(str(d))


def test_render_and_char_encoding_token_by_token():
    tok = CharTokenizer()
    text = T.render(PROBLEM, STEPS, marker=tok.STEP)
    assert text == PROBLEM + "\n" + "".join(s + "<step>" for s in STEPS)
    ex = T.encode_example(REC, tok, marker=tok.STEP, max_len=256, max_steps=8, add_eos=True)
    ids = ex["tokens"].tolist()
    assert ids == [tok.bos_id] + tok.encode(text) + [tok.eos_id]
    n_prompt = 1 + len(PROBLEM) + 1
    # every marker token: exactly at step_pos, labelled with its step's label
    assert [i for i, x in enumerate(ids) if x == tok.step_id] == ex["step_pos"].tolist()
    pos = n_prompt
    for t, s in enumerate(STEPS):
        pos += len(s)
        assert ex["step_pos"][t] == pos and ids[pos] == tok.step_id
        assert (ex["step_ids"][pos - len(s) : pos + 1] == t).all()
        pos += 1
    assert (ex["step_ids"][:n_prompt] == -1).all() and ex["step_ids"][-1] == -1
    assert not ex["response_mask"][:n_prompt].any() and ex["response_mask"][n_prompt:].all()
    assert ex["step_labels"].tolist() == [1.0, 1.0, 0.0] and ex["step_mask"].all()
    assert ex["outcome"] == 0.0 and ex["outcome_mask"] and ex["dropped_steps"] == 0
    assert ex["positions"].tolist() == list(range(len(ids)))


def test_truncation_drops_whole_steps_and_counts():
    tok = CharTokenizer()
    full = T.encode_example(REC, tok, marker=tok.STEP, max_len=256, max_steps=8)
    cut = T.encode_example(REC, tok, marker=tok.STEP, max_len=int(full["step_pos"][1]) + 5, max_steps=8)
    assert cut["step_pos"].tolist() == full["step_pos"][:2].tolist() and cut["dropped_steps"] == 1
    assert cut["tokens"][-1] == tok.step_id and not cut["outcome_mask"]
    n_full = len(full["tokens"])
    eos = T.encode_example(REC, tok, marker=tok.STEP, max_len=n_full, max_steps=8, add_eos=True)
    assert eos["dropped_steps"] == 1 and eos["tokens"][-1] == tok.step_id  # no room for eos: last step goes
    eos = T.encode_example(REC, tok, marker=tok.STEP, max_len=n_full + 1, max_steps=8, add_eos=True)
    assert eos["dropped_steps"] == 0 and eos["tokens"][-1] == tok.eos_id and eos["outcome_mask"]
    cut2 = T.encode_example(REC, tok, marker=tok.STEP, max_len=256, max_steps=1)
    assert len(cut2["step_pos"]) == 1 and cut2["dropped_steps"] == 2
    with pytest.raises(T.ExampleTooLong, match="max_len 10"):
        T.encode_example(REC, tok, marker=tok.STEP, max_len=10, max_steps=8)


def test_soft_unlabelled_q_and_v0():
    tok = CharTokenizer()
    r = Record(PROBLEM, STEPS, [0.25, None, 1.0], q_values=[0.5, 0.25, 0.0], v0=0.75)
    ex = T.encode_example(r, tok, marker="\n\n", max_len=256, max_steps=8)
    assert ex["step_labels"].tolist() == [0.25, 0.0, 1.0] and ex["step_mask"].tolist() == [True, False, True]
    assert ex["q_targets"].tolist() == [0.5, 0.25, 0.0] and ex["v0"] == np.float32(0.75)
    assert not ex["outcome_mask"]
    nl = tok.stoi["\n"]
    assert all(ex["tokens"][p] == nl and ex["tokens"][p - 1] == nl for p in ex["step_pos"])


def test_prefix_renders_identically_char_and_hf(hf_tok):
    for tok, marker, tmpl in [
        (CharTokenizer(), "<step>", None),
        (hf_tok, "<extra_0>", "hf"),
        (hf_tok, "\n\n", "Q: {problem}\nA:"),
        (hf_tok, " ки", None),
    ]:
        full = T.encode_example(REC, tok, marker=marker, max_len=512, max_steps=8, chat_template=tmpl)
        for k in range(len(STEPS) + 1):
            pre = T.encode_prefix(PROBLEM, STEPS[:k], tok, marker=marker, chat_template=tmpl)
            assert full["tokens"][: len(pre)].tolist() == pre.tolist()
            if k:
                assert len(pre) - 1 == full["step_pos"][k - 1]
        # a sampler's completion, decoded to steps, re-encodes to the same ids
        pre0 = T.encode_prefix(PROBLEM, [], tok, marker=marker, chat_template=tmpl)
        steps, rest = T.steps_from_ids(full["tokens"][len(pre0) :], tok, marker=marker)
        assert steps == STEPS and rest == []
        again = T.encode_example(
            Record(PROBLEM, steps), tok, marker=marker, max_len=512, max_steps=8, chat_template=tmpl
        )
        assert again["tokens"].tolist() == full["tokens"].tolist()


def test_hf_marker_is_single_special_token(hf_tok):
    assert isinstance(hf_tok, HFTokenizer)
    assert len(hf_tok.marker_ids("<extra_0>")) == 1
    ex = T.encode_example(REC, hf_tok, marker="<extra_0>", max_len=512, max_steps=8, chat_template="hf")
    mid = hf_tok.marker_ids("<extra_0>")[0]
    assert [i for i, x in enumerate(ex["tokens"]) if x == mid] == ex["step_pos"].tolist()
    text = hf_tok.decode(ex["tokens"])
    assert text == T.render(PROBLEM, STEPS, marker="<extra_0>", tokenizer=hf_tok, chat_template="hf")
    assert text.startswith("<|user|>" + PROBLEM)


def test_pad_batch_and_pack_keep_segments_apart():
    tok = CharTokenizer()
    recs = [
        Record("a = 1. b = a + 1. Find b.", ["b = a + 1 = 1 + 1 = 2"], [1.0], outcome=1.0),
        Record("a = 2. b = a * 2. Find b.", ["b = a * 2 = 2 * 2 = 4", "x"], [1.0, 0.5], outcome=1.0),
        REC,
    ]
    exs = [T.encode_example(r, tok, marker=tok.STEP, max_len=160, max_steps=4) for r in recs]
    assert [e["dropped_steps"] for e in exs] == [0, 0, 0]
    b = T.pad_batch(exs, 160, 4)
    assert b["tokens"].shape == (3, 160) and b["step_pos"].shape == (3, 4)
    assert b["step_pos"][0].tolist() == [exs[0]["step_pos"][0], -1, -1, -1]
    assert b["outcome"].tolist() == [1.0, 1.0, 0.0] and (b["segment_ids"][0] == 1).sum() == len(exs[0]["tokens"])
    lens = [len(e["tokens"]) for e in exs]
    seq = max(lens[2], lens[0] + lens[1] + 3)
    p = T.pack(exs, seq, 4)
    assert p["tokens"].shape == (2, seq) and p["num_examples"].tolist() == [2, 1]
    pad = seq - lens[0] - lens[1]
    assert p["segment_ids"][0].tolist() == [1] * lens[0] + [2] * lens[1] + [0] * pad
    assert p["positions"][0, lens[0]] == 0 and p["tokens"][0, lens[0]] == tok.bos_id
    assert p["positions"][0, lens[0] + 5] == 5
    # step positions re-based into the row and still pointing at markers, labels in order
    assert p["step_pos"][0].tolist() == [
        exs[0]["step_pos"][0],
        exs[1]["step_pos"][0] + lens[0],
        exs[1]["step_pos"][1] + lens[0],
        -1,
    ]
    assert all(p["tokens"][0, q] == tok.step_id for q in p["step_pos"][0][:3])
    assert p["step_labels"][0].tolist() == [1.0, 1.0, 0.5, 0.0]
    assert p["step_segment"][0].tolist() == [1, 2, 2, 0]
    assert (p["step_ids"][0, : lens[0]] == exs[0]["step_ids"]).all()
    assert not p["outcome_mask"][0] and p["outcome_mask"][1] and p["outcome"][1] == 0.0
    with pytest.raises(ValueError, match="does not fit"):
        T.pack(exs, 50, 4)
    with pytest.raises(ValueError, match="num_rows"):
        T.pack(exs, seq, 4, num_rows=1)


def test_make_tokenizer_choices(tmp_path):
    assert isinstance(make_tokenizer(None), CharTokenizer) and isinstance(
        make_tokenizer({"source": "arith"}), CharTokenizer
    )
    with pytest.raises(ValueError, match="needs `tokenizer`"):
        make_tokenizer({"source": "processbench"})
    with pytest.raises(FileNotFoundError):
        make_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="chat_template"):
        T.render_prompt("p", CharTokenizer(), "no placeholder")
    with pytest.raises(ValueError, match="hf"):
        T.render_prompt("p", CharTokenizer(), "hf")
