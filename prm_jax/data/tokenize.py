"""Rendering and encoding of (problem, steps), used by training AND inference, plus padding and packing.

Layout of one example (ids are encoded piece by piece, so a step's marker is always where the
labels say, and any prefix of a solution encodes to a prefix of the full encoding):

    [bos] prompt | step_0 marker | step_1 marker | ... | [eos]

`prompt` is `problem + "\\n"` (no chat template), `template.replace("{problem}", problem)` for a string
template, or the tokenizer's own chat template for `chat_template="hf"`. The marker is encoded with
`tokenizer.marker_ids(marker)`; a step's score is read at the LAST marker token (`step_pos`).
Step tokens and their marker get `step_ids = t` and `response_mask = True`; a trailing eos is in the
response with `step_ids = -1`. Truncation to `max_len` / `max_steps` drops whole trailing steps,
counts them in `dropped_steps` and then masks the outcome (it describes the full solution).
"""

from __future__ import annotations

import numpy as np

from prm_jax.data.records import DataError, Record

STEP_KEYS = ("step_pos", "step_labels", "step_mask", "q_targets", "step_segment")
TOKEN_KEYS = ("tokens", "segment_ids", "positions", "step_ids", "response_mask")


class ExampleTooLong(DataError):
    """The prompt alone does not fit in `max_len`."""


def render_prompt(problem: str, tokenizer=None, chat_template: str | None = None) -> str:
    """Returns the prompt text that precedes the first step."""
    if chat_template is None:
        return problem + "\n"
    if chat_template == "hf":
        if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
            raise ValueError("chat_template='hf' needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template(problem)
    if "{problem}" not in chat_template:
        raise ValueError(f"chat_template must contain '{{problem}}' or be 'hf': {chat_template!r}")
    return chat_template.replace("{problem}", problem)


def render(problem: str, steps, *, marker: str, tokenizer=None, chat_template: str | None = None) -> str:
    """Returns the full text: prompt, then every step followed by the marker."""
    return render_prompt(problem, tokenizer, chat_template) + "".join(s + marker for s in steps)


def encode_prefix(
    problem: str, steps_so_far, tokenizer, *, marker: str, chat_template: str | None = None, add_bos: bool | None = None
) -> np.ndarray:
    """Returns int32 ids a sampler continues from: [bos] prompt and each given step with its marker."""
    ids = _bos(tokenizer, add_bos) + tokenizer.encode(render_prompt(problem, tokenizer, chat_template))
    m = tokenizer.marker_ids(marker)
    for s in steps_so_far:
        ids += tokenizer.encode(s) + m
    return np.asarray(ids, np.int32)


def _bos(tokenizer, add_bos):
    if add_bos is None:
        add_bos = tokenizer.bos_id is not None
    if add_bos and tokenizer.bos_id is None:
        raise ValueError("add_bos=True but the tokenizer has no bos id")
    return [tokenizer.bos_id] if add_bos else []


def encode_example(
    record: Record,
    tokenizer,
    *,
    marker: str,
    max_len: int,
    max_steps: int,
    chat_template: str | None = None,
    add_bos: bool | None = None,
    add_eos: bool = False,
) -> dict:
    """Returns one example as unpadded numpy arrays with the batch keys ([n] tokens, [S] steps, scalars).

    Raises ExampleTooLong if the prompt (with bos) exceeds max_len.
    """
    prompt = _bos(tokenizer, add_bos) + tokenizer.encode(render_prompt(record.problem, tokenizer, chat_template))
    if len(prompt) > max_len:
        raise ExampleTooLong(f"prompt of {len(prompt)} tokens exceeds max_len {max_len} (record {record.id!r})")
    m = tokenizer.marker_ids(marker)
    if not m:
        raise ValueError(f"marker {marker!r} encodes to no tokens")
    ids, step_ids = list(prompt), [-1] * len(prompt)
    step_pos = []
    for t, s in enumerate(record.steps):
        piece = tokenizer.encode(s) + m
        eos = 1 if add_eos and t == len(record.steps) - 1 else 0  # the last step must leave room for eos
        if t >= max_steps or len(ids) + len(piece) + eos > max_len:
            break
        ids += piece
        step_ids += [t] * len(piece)
        step_pos.append(len(ids) - 1)
    n_steps = len(step_pos)
    dropped = len(record.steps) - n_steps
    if add_eos and dropped == 0:
        ids.append(tokenizer.eos_id)
        step_ids.append(-1)
    n = len(ids)
    response = np.zeros(n, bool)
    response[len(prompt) :] = True
    labels = record.step_labels[:n_steps] if record.step_labels is not None else [None] * n_steps
    ex = {
        "tokens": np.asarray(ids, np.int32),
        "segment_ids": np.ones(n, np.int32),
        "positions": np.arange(n, dtype=np.int32),
        "step_ids": np.asarray(step_ids, np.int32),
        "response_mask": response,
        "step_pos": np.asarray(step_pos, np.int32),
        "step_labels": np.asarray([0.0 if x is None else float(x) for x in labels], np.float32),
        "step_mask": np.asarray([x is not None for x in labels], bool),
        "step_segment": np.ones(n_steps, np.int32),
        "outcome": np.float32(record.outcome or 0.0),
        "outcome_mask": np.bool_(record.outcome is not None and dropped == 0),
        "dropped_steps": np.int32(dropped),
    }
    if record.q_values is not None:
        ex["q_targets"] = np.asarray(record.q_values[:n_steps], np.float32)
    if record.v0 is not None:
        ex["v0"] = np.float32(record.v0)
    return ex


def steps_from_ids(ids, tokenizer, *, marker: str) -> tuple[list[str], list[int]]:
    """Returns (completed step texts, ids after the last marker) of generated response ids."""
    m = tokenizer.marker_ids(marker)
    ids = [int(i) for i in ids]
    steps, start, i = [], 0, 0
    while i + len(m) <= len(ids):
        if ids[i : i + len(m)] == m:
            steps.append(tokenizer.decode(ids[start:i]))
            i += len(m)
            start = i
        else:
            i += 1
    return steps, ids[start:]


def _empty(batch: int, seq_len: int, max_steps: int, pad_id: int, keys) -> dict:
    out = {
        "tokens": np.full((batch, seq_len), pad_id, np.int32),
        "segment_ids": np.zeros((batch, seq_len), np.int32),
        "positions": np.zeros((batch, seq_len), np.int32),
        "step_ids": np.full((batch, seq_len), -1, np.int32),
        "response_mask": np.zeros((batch, seq_len), bool),
        "step_pos": np.full((batch, max_steps), -1, np.int32),
        "step_labels": np.zeros((batch, max_steps), np.float32),
        "step_mask": np.zeros((batch, max_steps), bool),
        "step_segment": np.zeros((batch, max_steps), np.int32),
        "outcome": np.zeros((batch,), np.float32),
        "outcome_mask": np.zeros((batch,), bool),
        "dropped_steps": np.zeros((batch,), np.int32),
        "num_examples": np.zeros((batch,), np.int32),
    }
    if "q_targets" in keys:
        out["q_targets"] = np.zeros((batch, max_steps), np.float32)
    if "v0" in keys:
        out["v0"] = np.zeros((batch,), np.float32)
    return out


def _place(out: dict, row: int, ex: dict, tok_off: int, step_off: int, seg: int) -> None:
    n, s = len(ex["tokens"]), len(ex["step_pos"])
    sl = slice(tok_off, tok_off + n)
    out["tokens"][row, sl] = ex["tokens"]
    out["segment_ids"][row, sl] = seg
    out["positions"][row, sl] = ex["positions"]
    # step ids index the row's steps (like step_pos), so the examples of a packed row never share one
    out["step_ids"][row, sl] = np.where(ex["step_ids"] >= 0, ex["step_ids"] + step_off, -1)
    out["response_mask"][row, sl] = ex["response_mask"]
    st = slice(step_off, step_off + s)
    out["step_pos"][row, st] = ex["step_pos"] + tok_off
    out["step_labels"][row, st] = ex["step_labels"]
    out["step_mask"][row, st] = ex["step_mask"]
    out["step_segment"][row, st] = seg
    if "q_targets" in out and "q_targets" in ex:
        out["q_targets"][row, st] = ex["q_targets"]
    out["dropped_steps"][row] += ex["dropped_steps"]
    out["num_examples"][row] += 1


def _check_fits(ex: dict, seq_len: int, max_steps: int) -> None:
    if len(ex["tokens"]) > seq_len or len(ex["step_pos"]) > max_steps:
        raise ValueError(
            f"example of {len(ex['tokens'])} tokens / {len(ex['step_pos'])} steps does not "
            f"fit seq_len {seq_len} / max_steps {max_steps}; encode with the same limits"
        )


def pad_batch(examples: list[dict], seq_len: int, max_steps: int, pad_id: int = 0, num_rows: int | None = None) -> dict:
    """Returns a batch with one example per row, padded to [B, seq_len] and [B, max_steps].

    With `num_rows`, B = num_rows and the rows past the examples are empty (segment_ids 0, no steps).
    """
    if num_rows is not None and len(examples) > num_rows:
        raise ValueError(f"{len(examples)} examples > num_rows {num_rows}")
    keys = set().union(*(ex.keys() for ex in examples)) if examples else set()
    out = _empty(num_rows or len(examples), seq_len, max_steps, pad_id, keys)
    for row, ex in enumerate(examples):
        _check_fits(ex, seq_len, max_steps)
        _place(out, row, ex, 0, 0, 1)
        out["outcome"][row] = ex["outcome"]
        out["outcome_mask"][row] = ex["outcome_mask"]
        if "v0" in out and "v0" in ex:
            out["v0"][row] = ex["v0"]
    return out


def pack_rows(examples: list[dict], seq_len: int, max_steps: int) -> list[list[int]]:
    """Returns, per row, the indices of the examples packed into it (greedy, in order)."""
    rows, cur, used_t, used_s = [], [], 0, 0
    for i, ex in enumerate(examples):
        _check_fits(ex, seq_len, max_steps)
        n, s = len(ex["tokens"]), len(ex["step_pos"])
        if cur and (used_t + n > seq_len or used_s + s > max_steps):
            rows.append(cur)
            cur, used_t, used_s = [], 0, 0
        cur.append(i)
        used_t += n
        used_s += s
    if cur:
        rows.append(cur)
    return rows


def pack(examples: list[dict], seq_len: int, max_steps: int, pad_id: int = 0, num_rows: int | None = None) -> dict:
    """Returns a batch with several examples per row: segment ids 1, 2, ..., step_pos re-based to the row.

    `outcome` / `v0` are per row, so they are kept (and `outcome_mask` set) only for one-example rows.
    With `num_rows`, the batch has exactly that many rows (error if the examples need more).
    """
    rows = pack_rows(examples, seq_len, max_steps)
    if num_rows is not None and len(rows) > num_rows:
        raise ValueError(f"{len(examples)} examples need {len(rows)} rows > num_rows {num_rows}")
    keys = set().union(*(ex.keys() for ex in examples)) if examples else set()
    out = _empty(num_rows or len(rows), seq_len, max_steps, pad_id, keys)
    for r, idx in enumerate(rows):
        tok_off = step_off = 0
        for seg, i in enumerate(idx, start=1):
            ex = examples[i]
            _place(out, r, ex, tok_off, step_off, seg)
            tok_off += len(ex["tokens"])
            step_off += len(ex["step_pos"])
        if len(idx) == 1:
            out["outcome"][r] = examples[idx[0]]["outcome"]
            out["outcome_mask"][r] = examples[idx[0]]["outcome_mask"]
            if "v0" in out and "v0" in examples[idx[0]]:
                out["v0"][r] = examples[idx[0]]["v0"]
    return out
