"""What `prm-jax data formats` prints: each reader format's fields and one example row.

The examples are checked by the tests: each one reads, through its format's reader, into records.
"""

from __future__ import annotations

import json

# format -> (its fields, an example row); keys are `readers.FORMATS`
FORMATS = {
    "prm800k": (
        "PRM800K raw phase files: `question.problem`, `question.ground_truth_answer`, `label.steps[]` with "
        "`completions[]` (`text`, `rating` -1/0/1), `chosen_completion` or `human_completion`",
        {
            "question": {"problem": "What is 2 + 3 * 4?", "ground_truth_answer": "14"},
            "label": {
                "steps": [
                    {"completions": [{"text": "3 * 4 = 12.", "rating": 1}], "chosen_completion": 0},
                    {
                        "completions": [{"text": "2 + 12 = 14. # Answer\n\n14", "rating": 1}],
                        "chosen_completion": 0,
                    },
                ],
                "finish_reason": "solution",
            },
        },
    ),
    "prm800k_stepwise": (
        "one row per rated step: `instruction`, `responses` (earlier steps), `next_response`, `rating`, "
        "`is_preferred_response` (the Hub's phase-1 step-wise copies; parquet or jsonl)",
        {
            "instruction": "What is 2 + 3 * 4?",
            "responses": ["3 * 4 = 12."],
            "next_response": "2 + 12 = 14.",
            "answer": "14",
            "rating": 1.0,
            "is_preferred_response": True,
        },
    ),
    "math_shepherd": (
        "`input`: the problem then steps each closed by `ки`; `label`: the same text with + or - per tag",
        {
            "input": "What is 2 + 3 * 4? Step 1: 3 * 4 = 12. ки\nStep 2: 2 + 12 = 14. The answer is: 14 ки",
            "label": "What is 2 + 3 * 4? Step 1: 3 * 4 = 12. +\nStep 2: 2 + 12 = 14. The answer is: 14 +",
        },
    ),
    "processbench": (
        "`problem`, `steps[]`, `label` (0-based index of the earliest wrong step, -1 none), "
        "`final_answer_correct` (ProcessBench's JSON arrays, or jsonl)",
        {
            "id": "gsm8k-0",
            "problem": "What is 2 + 3 * 4?",
            "steps": ["2 + 3 = 5.", "5 * 4 = 20."],
            "final_answer_correct": False,
            "label": 0,
        },
    ),
    "stepwise_jsonl": (
        "`prompt`, `completions[]` (steps), `labels[]` (bool or a probability per step); optional `q`, `v0`, "
        "`correct`, `answer`, `id`, `meta` (what `prm_jax.labeling` writes)",
        {"prompt": "What is 2 + 3 * 4?", "completions": ["3 * 4 = 12.", "2 + 12 = 14."], "labels": [True, 0.75]},
    ),
    "outcome_jsonl": (
        "`prompt`, `response` (steps split on blank lines) or `steps[]`, `correct` (outcome label); optional `answer`",
        {"prompt": "What is 2 + 3 * 4?", "response": "3 * 4 = 12.\n\n2 + 12 = 14.", "correct": True, "answer": "14"},
    ),
    "gsm8k": (
        "GSM8K: `question`, `answer` (solution lines ending in `#### N`)",
        {"question": "Tom has 2 bags of 3 apples. How many apples?", "answer": "2 * 3 = <<2*3=6>>6\n#### 6"},
    ),
    "math": (
        "MATH / MATH500: `problem`, `solution` (answer = the `answer` field, else the last \\boxed{})",
        {"problem": "What is $2 + 3 \\cdot 4$?", "solution": "$3 \\cdot 4 = 12$, so the sum is $\\boxed{14}$."},
    ),
}

CONTAINERS = (
    "Containers (every format): .jsonl (one row per line), .json (an array of rows), .parquet, "
    ".arrow / .feather / .ipc (pyarrow), or hub:ID[:CONFIG]:SPLIT (datasets.load_dataset; needs the network)."
)


def describe() -> str:
    """Returns the text of `prm-jax data formats`: per format its fields and an example row."""
    lines = [CONTAINERS, ""]
    for name, (fields, example) in FORMATS.items():
        lines += [f"{name}", f"  fields:  {fields}", f"  example: {json.dumps(example, ensure_ascii=False)}", ""]
    lines.append("arith  the synthetic arithmetic task (no file: --count, --seed)")
    return "\n".join(lines)
