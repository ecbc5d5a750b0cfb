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


def _processbench_split(tmp_path):
    """Writes a two-case ProcessBench split (one correct solution, one wrong from step 0); returns its path."""
    import json

    cases = [
        {
            "id": "a",
            "problem": "What is 2 + 3?",
            "steps": ["Step 1: 2 + 3 = 5.", "The answer is \\boxed{5}."],
            "label": -1,
            "final_answer_correct": True,
        },
        {
            "id": "b",
            "problem": "What is 2 + 3 - 1?",
            "steps": ["Step 1: 2 + 3 = 6.", "Step 2: 6 - 1 = 5."],
            "label": 0,
            "final_answer_correct": False,
        },
    ]
    split = tmp_path / "tiny.json"
    split.write_text(json.dumps(cases))
    return split


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
    with pytest.raises(ValueError, match="unknown PRM family .nonsense."):
        heads.load_verifier("nonsense", str(tmp_path))


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


# ---------------------------------------------------------------------------------------------------
# qwen_prm: Qwen2ForProcessRewardModel
# ---------------------------------------------------------------------------------------------------

QWEN_TEMPLATE = (  # the Qwen2.5 chat format for given system / user / assistant turns
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]


def _qwen_like_tokenizer(folder):
    """Returns a byte-level BPE with Qwen's chat special tokens and `<extra_0>`, saved to folder; its
    merges join "\\n\\n" with the text around it (the step separation the model cards recommend)."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Step 1: 2 + 3 = 5.\n\nStep 2: 5 - 1 = 4.\n\nThe answer is \\boxed{4}.", "Please reason step by step"]
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=QWEN_SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<extra_0>"],
    )
    fast.chat_template = QWEN_TEMPLATE
    fast.save_pretrained(str(folder))
    return fast


def _qwen_prm(folder, vocab):
    """Saves a tiny random Qwen2ForProcessRewardModel (decoder under `model.`, `score.0/2`, no LM head)."""
    import json

    from safetensors.torch import save_file

    conf = transformers.Qwen2Config(**dict(TINY_HF, vocab_size=vocab, max_position_embeddings=256))
    torch.manual_seed(1)
    lm = transformers.Qwen2ForCausalLM(conf).eval()
    d = conf.hidden_size
    score = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 2)).eval()
    with torch.no_grad():
        for p in list(lm.parameters()) + list(score.parameters()):
            p.add_(torch.randn(p.shape) * 0.05)
    tensors = {k: v.contiguous() for k, v in lm.state_dict().items() if not k.startswith("lm_head")}
    tensors.update({f"score.{k}": v.contiguous() for k, v in score.state_dict().items()})
    save_file(tensors, str(folder / "model.safetensors"))
    hf_cfg = dict(conf.to_dict(), architectures=["Qwen2ForProcessRewardModel"], tie_word_embeddings=False)
    (folder / "config.json").write_text(json.dumps(hf_cfg))
    return lm.model, score


def _authors_qwen_prm(decoder, score, tokenizer, question, steps):
    """The model cards' scoring, written from their example code (system prompt, `<extra_0>` joins)."""
    messages = [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = torch.tensor([tokenizer.encode(text)])
    step_sep_id = tokenizer.encode("<extra_0>")[0]
    with torch.no_grad():
        logits = score(decoder(input_ids=input_ids).last_hidden_state)
        probs = logits.double().softmax(dim=-1)
    return probs[input_ids == step_sep_id][:, 1].numpy()


def test_qwen_prm_equals_the_authors_code(tmp_path):
    tok = _qwen_like_tokenizer(tmp_path)
    decoder, score = _qwen_prm(tmp_path, len(tok))
    assert heads.detect_family(str(tmp_path)) == "qwen_prm"
    ver = heads.load_verifier("auto", str(tmp_path))
    assert ver.kind == "mlp_head"
    problems = ["What is 2 + 3 - 1?", "What is 2 + 3?"]
    steps = [
        ["Step 1: 2 + 3 = 5.\n\n", "Step 2: 5 - 1 = 4.", "The answer is \\boxed{4}."],  # a step ending in "\n\n"
        ["Step 1: 2 + 3 = 5.", "The answer is \\boxed{5}."],
    ]
    got = ver.step_scores(problems, steps)
    for p, s, g in zip(problems, steps, got):
        want = _authors_qwen_prm(decoder, score, tok, p, s)
        assert len(want) == len(s) == len(g)
        np.testing.assert_allclose(g, want, atol=1e-4)
    assert not np.allclose(got[0], got[0][0])  # the scores differ per step: the read-out is not constant


def test_qwen_prm_errors(tmp_path):
    tok = _qwen_like_tokenizer(tmp_path)
    _qwen_prm(tmp_path, len(tok))
    ver = heads.load_verifier("qwen_prm", str(tmp_path))
    with pytest.raises(ValueError, match="is at 3 positions of a 2-step solution"):
        ver.step_scores(["What is 2 + 3?"], [["Step 1: 2 + 3 = 5.<extra_0>", "The answer is 5."]])
    from prm_jax import hf

    with pytest.raises(ValueError, match="two-class MLP score head"):
        hf.load_checkpoint(str(tmp_path))  # prm-jax's own head would be the wrong read-out


def test_detect_family_without_a_head_lists_the_choices(tmp_path):
    tok = _sentencepiece_like_tokenizer(tmp_path)
    _mistral(tmp_path, len(tok))
    with pytest.raises(ValueError, match="give --head, one of prm_jax, token_classification, qwen_prm"):
        heads.detect_family(str(tmp_path))


def test_evaluate_processbench_reads_a_qwen_prm_as_its_authors_do(tmp_path, capsys):
    """`prm-jax evaluate processbench` on a Qwen2ForProcessRewardModel folder (--head auto): every
    saved step probability equals the authors' read-out of that case."""
    import json

    from prm_jax import cli
    from prm_jax.data import readers

    ckpt = tmp_path / "qwen_prm"
    ckpt.mkdir()
    tok = _qwen_like_tokenizer(ckpt)
    decoder, score = _qwen_prm(ckpt, len(tok))
    split = _processbench_split(tmp_path)
    out = tmp_path / "pb.json"
    args = ["evaluate", "processbench", "--checkpoint", str(ckpt), "--data", str(split), "--output", str(out)]
    assert cli.main(args) == 0
    res = json.loads(out.read_text())
    assert res["head"] == "qwen_prm" and res["threshold"] == 0.5
    for rec, got in zip(readers.read_all("processbench", str(split)), res["predictions"]["tiny"]):
        want = _authors_qwen_prm(decoder, score, tok, rec.problem, rec.steps)
        np.testing.assert_allclose(got["step_probs"], want, atol=1e-4)
    assert cli.main(args + ["--marker", "\n\n"]) == 2  # the family renders itself: a marker is an error
    assert "do not apply to --head qwen_prm" in capsys.readouterr().err


def test_search_cli_ranks_with_a_public_prm(tmp_path, capsys):
    """`prm-jax search --verifier-hf DIR --head auto` on a Qwen2ForProcessRewardModel: best-of-N runs
    with the family's own rendering (plumbing on a random policy sharing its tokenizer)."""
    import json

    from prm_jax import cli

    prm = tmp_path / "prm"
    prm.mkdir()
    tok = _qwen_like_tokenizer(prm)
    _qwen_prm(prm, len(tok))
    pol = tmp_path / "policy"
    tok.save_pretrained(str(pol))
    torch.manual_seed(2)
    conf = transformers.Qwen2Config(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))
    transformers.Qwen2ForCausalLM(conf).save_pretrained(str(pol))
    args = ["search", "--policy-hf", str(pol), "--verifier-hf", str(prm), "--head", "auto"]
    args += ["--method", "best_of_n", "--n", "2", "--arith", "2", "--max-new-tokens", "24"]
    assert cli.main(args) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["problems"] == 2 and 0 <= got["accuracy"] <= 1 and got["gen_tokens_per_problem"] > 0
    # real problem files (GSM8K, graded as GSM8K) with --limit
    import os

    gsm8k = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gsm8k.jsonl")
    i = args.index("--arith")
    args = args[:i] + args[i + 2 :] + ["--problems", gsm8k, "--limit", "2"]
    assert cli.main(args) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["problems"] == 2 and 0 <= got["accuracy"] <= 1


# ---------------------------------------------------------------------------------------------------
# rlhflow: a generative PRM asked for + / - after each step in a chat
# ---------------------------------------------------------------------------------------------------

LLAMA3_TEMPLATE = (  # the Llama 3 chat format's turn structure
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _llama3_like_tokenizer(folder):
    """Returns a byte-level BPE with Llama 3's chat special tokens, saved to folder."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    special = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["What is 2 + 3? Step 1: 2 + 3 = 5.", "Step 2: 5 - 1 = 4.", "user assistant + -\n\n+"]
    trainer = trainers.BpeTrainer(
        vocab_size=180,
        special_tokens=special,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|eot_id|>"
    )
    fast.chat_template = LLAMA3_TEMPLATE
    fast.save_pretrained(str(folder))
    return fast


def _authors_rlhflow(model, tokenizer, question, steps):
    """RLHFlow's step-wise scoring, written from their evaluation code: one forward per step prefix."""
    plus_tag_id, minus_tag_id = tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    conversation, scores = [], []
    for k in range(len(steps)):
        text = question + " " + steps[0] if k == 0 else steps[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
        input_ids = torch.tensor([tokenizer.encode(rendered, add_special_tokens=False)])
        with torch.no_grad():
            logits = model(input_ids).logits[:, -3, [plus_tag_id, minus_tag_id]]
        scores.append(logits.double().softmax(dim=-1)[0, 0].item())
    return np.asarray(scores)


def test_rlhflow_equals_the_authors_code(tmp_path):
    tok = _llama3_like_tokenizer(tmp_path)
    conf = transformers.LlamaConfig(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))
    torch.manual_seed(3)
    model = transformers.LlamaForCausalLM(conf).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    model.save_pretrained(str(tmp_path))
    ver = heads.load_verifier("rlhflow", str(tmp_path))
    problems = ["What is 2 + 3 - 1?", "What is 2 + 3?"]
    steps = [["Step 1: 2 + 3 = 5.", "Step 2: 5 - 1 = 4.", "The answer is 4."], ["Step 1: 2 + 3 = 5."]]
    got = ver.step_scores(problems, steps)
    for p, s, g in zip(problems, steps, got):
        want = _authors_rlhflow(model, tok, p, s)
        assert len(want) == len(s) == len(g)
        np.testing.assert_allclose(g, want, atol=1e-4)
    assert not np.allclose(got[0], got[0][0])


def test_rlhflow_refuses_a_template_whose_prefixes_differ(tmp_path):
    """A template that renders a shorter chat as other tokens (here: it starts with the turn count)
    would make one causal pass read other positions than the authors' per-prefix passes."""
    tok = _llama3_like_tokenizer(tmp_path)
    tok.chat_template = "{{ messages|length }}" + LLAMA3_TEMPLATE
    tok.save_pretrained(str(tmp_path))
    conf = transformers.LlamaConfig(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))
    transformers.LlamaForCausalLM(conf).save_pretrained(str(tmp_path))
    ver = heads.load_verifier("rlhflow", str(tmp_path))
    with pytest.raises(ValueError, match="other tokens than the start of the whole chat"):
        ver.step_scores(["What is 2 + 3?"], [["Step 1: 2 + 3 = 5.", "The answer is 5."]])


# ---------------------------------------------------------------------------------------------------
# skywork: a value head on the causal LM, read at each step's newline
# ---------------------------------------------------------------------------------------------------


def _authors_skywork(lm, v_w, v_b, tokenizer, problem, response):
    """Skywork's prepare_input and PRM_MODEL read-out (sigmoid of the value head at the flags)."""
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids, reward_flags = [], [0] * len(prompt_ids)
    step_token_id = tokenizer.encode("\n")[-1]
    for step in response.split("\n"):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        h = lm(ids, output_hidden_states=True).hidden_states[-1][0]
        value = torch.sigmoid((h @ v_w.T + v_b)[:, 0]).double()
    return value[torch.tensor(reward_flags) == 1].numpy()


def test_skywork_equals_the_authors_code(tmp_path):
    from safetensors.torch import load_file, save_file

    tok = _qwen_like_tokenizer(tmp_path)
    tok.bos_token = "<|endoftext|>"  # Skywork's code prepends tokenizer.bos_token as text
    tok.save_pretrained(str(tmp_path))
    conf = transformers.Qwen2Config(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))
    torch.manual_seed(4)
    lm = transformers.Qwen2ForCausalLM(conf).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    lm.save_pretrained(str(tmp_path))
    v_w, v_b = torch.randn(1, conf.hidden_size) * 0.3, torch.randn(1)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    save_file(
        dict(tensors, **{"v_head.summary.weight": v_w, "v_head.summary.bias": v_b}),
        str(tmp_path / "model.safetensors"),
        metadata={"format": "pt"},
    )
    assert heads.detect_family(str(tmp_path)) == "skywork"
    ver = heads.load_verifier("auto", str(tmp_path))
    problems = ["What is 2 + 3 - 1?", "What is 2 + 3?"]
    steps = [["Step 1: 2 + 3 = 5.", "", "Step 2: 5 - 1 = 4."], ["The answer is \\boxed{5}."]]  # an empty step too
    got = ver.step_scores(problems, steps)
    for p, s, g in zip(problems, steps, got):
        want = _authors_skywork(lm, v_w, v_b, tok, p, "\n".join(s))
        assert len(want) == len(s) == len(g)
        np.testing.assert_allclose(g, want, atol=1e-4)
    with pytest.raises(ValueError, match="holds the step token"):
        ver.step_scores(["What is 2 + 3?"], [["Step 1:\n2 + 3 = 5."]])


# ---------------------------------------------------------------------------------------------------
# implicit: EurusPRM's beta * log pi / pi_ref against a reference folder
# ---------------------------------------------------------------------------------------------------


def _authors_eurus(model, ref_model, tokenizer, problem, steps, coef=0.001):
    """The EurusPRM-Stage2 model card's example, written from its code."""
    chat = lambda s: [{"role": "user", "content": problem}, {"role": "assistant", "content": "\n\n".join(s)}]  # noqa: E731
    text = tokenizer.apply_chat_template(chat(steps), tokenize=False, add_generation_prompt=False)
    input_ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    step_last_tokens = []
    for step_num in range(0, len(steps) + 1):
        conv = tokenizer.apply_chat_template(chat(steps[:step_num]), tokenize=False, add_generation_prompt=False)
        conv = conv.strip()
        if step_num != 0 and step_num != len(steps):
            conv += "\n\n"
        currect_ids = tokenizer.encode(conv, add_special_tokens=False)
        step_last_tokens.append(len(currect_ids) - 2)
    label_mask = torch.tensor([[0] * step_last_tokens[0] + [1] * (input_ids.shape[-1] - step_last_tokens[0])])
    step_last_tokens = torch.tensor([step_last_tokens])

    def get_logps(m):
        logits = m(input_ids=input_ids).logits[:, :-1, :].double()
        labels = input_ids[:, 1:]
        return torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)

    with torch.no_grad():
        raw_reward = get_logps(model) - get_logps(ref_model)
    beta_reward = (coef * raw_reward * label_mask[:, 1:]).cumsum(-1)
    return beta_reward.gather(dim=-1, index=step_last_tokens[:, 1:])[0].numpy()


def test_implicit_equals_the_eurus_model_card(tmp_path):
    prm, ref = tmp_path / "prm", tmp_path / "ref"
    tok = _qwen_like_tokenizer(prm)
    conf = transformers.Qwen2Config(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))
    models = []
    for seed, folder in ((5, prm), (6, ref)):
        torch.manual_seed(seed)
        m = transformers.Qwen2ForCausalLM(conf).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape) * 0.05)
        m.save_pretrained(str(folder))
        models.append(m)
    ver = heads.load_verifier("implicit", str(prm), ref=str(ref), beta=1.0)  # beta 1: differences show
    problems = ["What is 2 + 3 - 1?", "What is 2 + 3?"]
    steps = [["Step 1: 2 + 3 = 5.", "Step 2: 5 - 1 = 4.", "The answer is \\boxed{4}."], ["The answer is 5."]]
    got = ver.values(problems, steps)
    for p, s, g in zip(problems, steps, got):
        want = _authors_eurus(*models, tok, p, s, coef=1.0)
        assert len(want) == len(s) == len(g)
        np.testing.assert_allclose(g, want, atol=1e-4)
    assert heads.load_verifier("implicit", str(prm), ref=str(ref)).beta == heads.EURUS_BETA
    with pytest.raises(ValueError, match="needs its reference model"):
        heads.load_verifier("implicit", str(prm))
    # ProcessBench on it: the saved step probabilities are sigmoid(q_t) of the authors' q_t
    import json

    from prm_jax import cli

    split = tmp_path / "tiny.json"
    cases = [{"id": "a", "problem": problems[0], "steps": steps[0], "label": 1, "final_answer_correct": False}]
    split.write_text(json.dumps(cases))
    out = tmp_path / "pb.json"
    args = ["evaluate", "processbench", "--checkpoint", str(prm), "--head", "implicit", "--data", str(split)]
    assert cli.main(args + ["--ref-checkpoint", str(ref), "--beta", "1", "--output", str(out)]) == 0
    got = json.loads(out.read_text())["predictions"]["tiny"][0]["step_probs"]
    q = _authors_eurus(*models, tok, problems[0], steps[0], coef=1.0)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-q)), atol=1e-4)


def test_a_family_loads_sharded_and_scores_the_same(tmp_path):
    """`shardings=` places the decoder tensor by tensor (the 7B-72B path); the scores do not move."""
    import flax.linen as nn
    import jax
    from jax.sharding import Mesh, NamedSharding

    from prm_jax import model as M

    tok = _qwen_like_tokenizer(tmp_path)
    _qwen_prm(tmp_path, len(tok))
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("fsdp", "tensor"))
    rules = (("embed", "fsdp"), ("heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"))
    shard_fn = lambda cfg: nn.logical_to_mesh_sharding(M.param_logical_axes(cfg), mesh, rules)  # noqa: E731
    sharded = heads.load_verifier("qwen_prm", str(tmp_path), shardings=shard_fn)
    up = sharded.params["layers"]["mlp"]["up_proj"]["kernel"]
    assert isinstance(up.sharding, NamedSharding) and len(up.addressable_shards) == 4
    plain = heads.load_verifier("qwen_prm", str(tmp_path))
    problems, steps = ["What is 2 + 3?"], [["Step 1: 2 + 3 = 5.", "The answer is \\boxed{5}."]]
    np.testing.assert_allclose(
        sharded.step_scores(problems, steps)[0], plain.step_scores(problems, steps)[0], atol=1e-5
    )


@pytest.mark.parametrize("family", ["math_shepherd", "rlhflow", "skywork"])
def test_evaluate_processbench_runs_on_every_family(tmp_path, family):
    """ProcessBench end to end on a tiny checkpoint of each remaining family: the command's saved step
    probabilities are the family Verifier's (whose parity with the authors' code is tested above)."""
    import json

    from safetensors.torch import load_file, save_file

    from prm_jax import cli
    from prm_jax.data import readers

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    if family == "math_shepherd":
        _mistral(ckpt, len(_sentencepiece_like_tokenizer(ckpt)))
    else:
        tok = _llama3_like_tokenizer(ckpt) if family == "rlhflow" else _qwen_like_tokenizer(ckpt)
        if family == "skywork":
            tok.bos_token = "<|endoftext|>"
            tok.save_pretrained(str(ckpt))
        cls = transformers.LlamaConfig if family == "rlhflow" else transformers.Qwen2Config
        arch = transformers.LlamaForCausalLM if family == "rlhflow" else transformers.Qwen2ForCausalLM
        torch.manual_seed(7)
        arch(cls(**dict(TINY_HF, vocab_size=len(tok), max_position_embeddings=256))).save_pretrained(str(ckpt))
        if family == "skywork":
            t = load_file(str(ckpt / "model.safetensors"))
            t.update(
                {"v_head.summary.weight": torch.randn(1, TINY_HF["hidden_size"]), "v_head.summary.bias": torch.zeros(1)}
            )
            save_file(t, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    split = _processbench_split(tmp_path)
    out = tmp_path / "pb.json"
    assert (
        cli.main(
            [
                "evaluate",
                "processbench",
                "--checkpoint",
                str(ckpt),
                "--head",
                family,
                "--data",
                str(split),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["head"] == family
    recs = readers.read_all("processbench", str(split))
    want = heads.load_verifier(family, str(ckpt)).step_scores([r.problem for r in recs], [r.steps for r in recs])
    for got, w in zip(res["predictions"]["tiny"], want):
        np.testing.assert_allclose(got["step_probs"], w, atol=1e-5)  # saved to 5 decimals


def test_evaluate_processbench_on_a_token_classification_folder(tmp_path):
    """A TRL-style *ForTokenClassification PRM (here: prm-jax's export) through `--head auto`: the
    saved step probabilities are the score Verifier's of the same folder."""
    import json

    from prm_jax import cli, hf
    from prm_jax import model as M
    from prm_jax.data import readers
    from prm_jax.data.tokenizers import HFTokenizer
    from _hf_utils import random_params

    ckpt = tmp_path / "ckpt"
    tok = _qwen_like_tokenizer(ckpt)
    cfg = M.ModelConfig.preset("tiny", architecture="qwen2", qkv_bias=True, vocab_size=len(tok))
    hf.save_checkpoint(str(ckpt), cfg, random_params(cfg, seed=8), head="token_classification", num_labels=2)
    assert heads.detect_family(str(ckpt)) == "token_classification"
    split, out = _processbench_split(tmp_path), tmp_path / "pb.json"
    args = ["evaluate", "processbench", "--checkpoint", str(ckpt), "--data", str(split), "--output", str(out)]
    assert cli.main(args + ["--marker", "<extra_0>"]) == 0
    res = json.loads(out.read_text())
    assert res["head"] == "token_classification"
    ver = heads.load_verifier("token_classification", str(ckpt), tokenizer=HFTokenizer(str(ckpt)), marker="<extra_0>")
    recs = readers.read_all("processbench", str(split))
    want = ver.step_scores([r.problem for r in recs], [r.steps for r in recs])
    for got, w in zip(res["predictions"]["tiny"], want):
        assert len(got["step_probs"]) == len(w) == 2
        np.testing.assert_allclose(got["step_probs"], w, atol=1e-5)
