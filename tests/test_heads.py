"""prm_jax.heads: each public PRM family scored as its authors' code scores it, against a torch
reference written from that code, on a tiny random checkpoint and a tokenizer built offline."""

import numpy as np
import pytest

from prm_jax import heads
from _hf_utils import TINY_HF  # tests/ is on sys.path under pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CORPUS = [
    "Step 1: 2 + 3 = 5 ки",
    "Step 2: 5 - 1 = 4 ки",
    "Janet has 16 eggs. She eats 3. How many are left? ки",
    "The answer is: 13 ки",
    "+ - + - ки ки",
]


def _sentencepiece_like_tokenizer(folder, corpus=tuple(CORPUS)):
    """Returns a BPE tokenizer with Metaspace pre-tokenisation and a BOS, like Mistral's, saved to folder."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(list(corpus) * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(folder))
    return fast


def _mistral(folder, vocab):
    conf = transformers.MistralConfig(
        **dict(TINY_HF, vocab_size=vocab, max_position_embeddings=256), sliding_window=None
    )
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(conf).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    model.save_pretrained(str(folder))
    return model


def _authors_math_shepherd(model, tokenizer, question, output):
    """The model card's scoring, written from its example code."""
    candidate_tokens = tokenizer.encode("+ -")[1:]
    step_tag_id = tokenizer.encode("ки")[-1]
    input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
    with torch.no_grad():
        logits = model(input_id).logits[:, :, candidate_tokens]
        scores = logits.double().softmax(dim=-1)[:, :, 0]
    return scores[input_id == step_tag_id].numpy()


def test_math_shepherd_equals_the_authors_code(tmp_path):
    tok = _sentencepiece_like_tokenizer(tmp_path)
    model = _mistral(tmp_path, len(tok))
    ver = heads.load_verifier("math_shepherd", str(tmp_path))
    problems = ["Janet has 16 eggs. She eats 3. How many are left?", "What is 2 + 3?"]
    steps = [
        ["Step 1: 16 - 3 = 13", "The answer is: 13"],
        ["Step 1: 2 + 3 = 5", "Step 2: 5 - 1 = 4", "The answer is: 4"],
    ]
    got = ver.step_scores(problems, steps)
    for p, s, g in zip(problems, steps, got):
        want = _authors_math_shepherd(model, tok, p, "\n".join(f"{x} ки" for x in s))
        assert len(want) == len(s) == len(g)
        np.testing.assert_allclose(g, want, atol=2e-5)


def test_math_shepherd_refuses_a_miscounted_tag(tmp_path):
    """A tag inside a step (or merged away by the tokenizer) would shift every later score in the
    authors' loop; prm-jax names it instead."""
    _mistral(tmp_path, len(_sentencepiece_like_tokenizer(tmp_path)))
    ver = heads.load_verifier("math_shepherd", str(tmp_path))
    with pytest.raises(ValueError, match="is at 3 positions of a 2-step solution"):
        ver.step_scores(["What is 2 + 3?"], [["Step 1: 2 + 3 = 5 ки", "The answer is: 5"]])


def test_unknown_family_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown PRM family 'skywork'"):
        heads.load_verifier("skywork", str(tmp_path))


def test_math_shepherd_with_a_tag_merged_into_the_newline_is_an_error(tmp_path):
    """A BPE whose merges glue 'ки' to the following newline: the authors' `input_id == step_tag_id`
    finds only the last step's tag (their loop would score one step of three); prm-jax refuses."""
    corpus = ["Step 1: 2 + 3 = 5 ки\nStep 2: 5 - 1 = 4 ки\nThe answer is: 4 ки", "+ - ки"]
    tok = _sentencepiece_like_tokenizer(tmp_path, corpus)
    assert "▁ки\n" in tok.get_vocab() or any(t.startswith("▁ки\n") for t in tok.get_vocab())
    model = _mistral(tmp_path, len(tok))
    steps = ["Step 1: 2 + 3 = 5", "Step 2: 5 - 1 = 4", "The answer is: 4"]
    assert len(_authors_math_shepherd(model, tok, "What is 2 + 3 - 1?", "\n".join(f"{x} ки" for x in steps))) < 3
    ver = heads.load_verifier("math_shepherd", str(tmp_path))
    with pytest.raises(ValueError, match="merged with its neighbours"):
        ver.step_scores(["What is 2 + 3 - 1?"], [steps])
