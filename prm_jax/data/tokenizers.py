"""The tokenizer protocol shared by the char tokenizer and Hugging Face tokenizers, and a factory.

Protocol: `encode(text) -> list[int]` (no special tokens added), `decode(ids) -> str`, `pad_id`,
`bos_id` (may be None), `eos_id`, `vocab_size`, `marker_ids(marker) -> list[int]`, and optionally
`apply_chat_template(problem) -> str`.
"""

from __future__ import annotations

import os
from typing import Protocol

from prm_jax.data.arith import CharTokenizer


class Tokenizer(Protocol):
    pad_id: int
    bos_id: int | None
    eos_id: int

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids) -> str: ...
    def marker_ids(self, marker: str) -> list[int]: ...


class HFTokenizer:
    """Wraps a `transformers` tokenizer (from a local folder or an instance) in the protocol."""

    def __init__(self, tok_or_path):
        if isinstance(tok_or_path, (str, os.PathLike)):
            from transformers import AutoTokenizer

            if not os.path.isdir(tok_or_path):
                raise FileNotFoundError(f"tokenizer folder not found: {tok_or_path}")
            tok_or_path = AutoTokenizer.from_pretrained(str(tok_or_path), local_files_only=True)
        self.tok = tok_or_path
        self.name = getattr(self.tok, "name_or_path", "hf")
        self.eos_id = self.tok.eos_token_id
        self.bos_id = self.tok.bos_token_id
        pad = self.tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        """Returns the ids of `text` with no special tokens added."""
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        """Returns the text of `ids`, special tokens kept (markers may be special tokens)."""
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def marker_ids(self, marker: str) -> list[int]:
        """Returns the ids closing a step: one id if `marker` is a single vocabulary token."""
        vocab_id = self.tok.convert_tokens_to_ids(marker)
        unk = self.tok.unk_token_id
        if isinstance(vocab_id, int) and vocab_id >= 0 and (unk is None or vocab_id != unk):
            return [vocab_id]
        ids = self.encode(marker)
        if not ids:
            raise ValueError(f"marker {marker!r} encodes to no tokens")
        return ids

    def apply_chat_template(self, problem: str) -> str:
        """Returns the tokenizer's chat prompt for a user turn holding `problem`."""
        return self.tok.apply_chat_template(
            [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
        )


def char_to_transformers(tok: "CharTokenizer"):
    """Returns a transformers PreTrainedTokenizerFast that encodes exactly as the CharTokenizer does
    (one id per character, the special names as single ids, other characters <unk>), so an exported
    char-tokenizer model loads with AutoTokenizer (`loop.export_hf` saves it beside the weights)."""
    import transformers
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    t = Tokenizer(models.WordLevel(vocab=dict(tok.stoi), unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    t.decoder = decoders.Fuse()
    t.add_special_tokens([AddedToken(x, special=True, normalized=False) for x in tok.SPECIALS])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=t, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def save_tokenizer(tok, out_dir: str) -> None:
    """Writes `tok` (a CharTokenizer or an HFTokenizer) as a transformers tokenizer folder."""
    hf_tok = char_to_transformers(tok) if isinstance(tok, CharTokenizer) else tok.tok
    hf_tok.save_pretrained(out_dir)


RENDERING_FILE = "prm_jax_rendering.json"  # an exported folder's step marker and chat template


def save_rendering(out_dir: str, marker: str, chat_template) -> None:
    """Writes how the run rendered a solution (its step marker, chat template) beside its weights."""
    import json

    with open(os.path.join(out_dir, RENDERING_FILE), "w", encoding="utf-8") as f:
        json.dump({"marker": marker, "chat_template": chat_template}, f, indent=1)


def load_rendering(folder: str | None) -> dict:
    """Returns {'marker', 'chat_template'} an export wrote into `folder` ({} when it has none)."""
    import json

    path = os.path.join(folder, RENDERING_FILE) if folder else ""
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_marker(data_cfg, tokenizer) -> str:
    """Returns the step marker a run trained with: its `data.marker`, else the tokenizer's default."""
    return data_cfg.marker or default_marker(tokenizer)


def default_marker(tokenizer) -> str:
    """Returns the step marker a tokenizer uses when none is given: the char tokenizer's own `<step>`
    token, else a blank line (what Qwen / PRM800K-style data split steps on)."""
    return CharTokenizer.STEP if isinstance(tokenizer, CharTokenizer) else "\n\n"


def make_tokenizer(cfg_or_path=None):
    """Returns a CharTokenizer for None / 'char' / a data section naming it, else an HFTokenizer for a folder."""
    if cfg_or_path is None or cfg_or_path == "char":
        return CharTokenizer()
    if isinstance(cfg_or_path, (str, os.PathLike)):
        return HFTokenizer(cfg_or_path)
    from prm_jax.config import complete_section

    data_cfg = complete_section("data", cfg_or_path)
    path = data_cfg.tokenizer
    if path in (None, "", "char"):
        if data_cfg.source != "arith" and path is None:
            raise ValueError(f"data config needs `tokenizer` (a folder, or 'char') for source {data_cfg.source!r}")
        return CharTokenizer()
    return HFTokenizer(path)
