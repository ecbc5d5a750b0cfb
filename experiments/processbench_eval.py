"""ProcessBench evaluation of a local step-score PRM checkpoint on its four splits (GSM8K, MATH,
OlympiadBench, Omni-MATH): accuracy on erroneous and on correct cases and their F1, per split and averaged.

    # runs `prm-jax evaluate processbench` with the flags built from this config (see command() below):
    prm-jax sweep --once --config experiments/processbench_eval.py:prm --workdir runs/pb --print-commands
    prm-jax sweep --once --config experiments/processbench_eval.py:prm --workdir runs/pb \
        --config.checkpoint=/ckpt/my_prm_hf --config.data_dir=/data/ProcessBench
    # threshold picked for best F1 on the GSM8K split and reused (the implicit-PRM protocol):
    prm-jax sweep --once --config experiments/processbench_eval.py:prm_pick --workdir runs/pb_pick \
        --config.checkpoint=/ckpt/my_prm_hf
    # this CPU: a tiny random HF checkpoint (make one with hf.save_checkpoint) on the 3-case fixture
    prm-jax sweep --once --config experiments/processbench_eval.py:tiny --workdir /tmp/pb_tiny \
        --config.checkpoint=/tmp/tiny_hf

Export a trained run to a HF folder first: `prm_jax.loop.export_hf(workdir, out_dir)`.
The marker must be the one the PRM was trained with ("\n\n" for the prm800k_bce.py config).
Variants: prm, prm_pick, tiny. `get_hyper` (a sweep without --once) compares the default threshold 0.5
with the threshold picked on GSM8K. `--once` runs the config as it is, in WORKDIR itself.
"""

from pathlib import Path

import ml_collections

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
COMMAND = "evaluate processbench"
RESULT_FILES = ("processbench.json",)
VARIANTS = ("prm", "prm_pick", "tiny")


def get_config(arg=None):
    arg = arg or "prm"
    if arg not in VARIANTS:
        raise ValueError(f"processbench_eval.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.stage = "processbench_eval"
    c.checkpoint = "/path/to/prm_hf_checkpoint"  # local folder (export gs:// runs with export_hf first)
    c.tokenizer = None  # None: the checkpoint's own
    c.data_dir = "/path/to/ProcessBench"  # holds gsm8k.json, math.json, olympiadbench.json, omnimath.json
    c.splits = ",".join(SPLITS)
    c.threshold = 0.5
    c.pick_threshold_on = None  # a split name: choose the threshold there, reuse it
    c.marker = "\n\n"
    c.chat_template = None
    c.batch_size = 8
    c.max_len = 4096
    c.limit = None
    if arg == "prm_pick":
        c.pick_threshold_on = "gsm8k"
    if arg == "tiny":
        c.checkpoint = "/tmp/prm_jax_tiny_hf"
        c.data_dir = str(FIXTURES)
        c.splits = "processbench_gsm8k"
        c.batch_size = 2
        c.max_len = 512
    return c


def command(config, workdir):
    """Returns the `prm-jax` arguments that run this config, writing WORKDIR/processbench.json."""
    data = [str(Path(config.data_dir) / f"{s}.json") for s in config.splits.split(",") if s]
    args = [
        "evaluate",
        "processbench",
        "--checkpoint",
        config.checkpoint,
        "--data",
        *data,
        "--marker",
        config.marker,
        "--batch-size",
        str(config.batch_size),
        "--max-len",
        str(config.max_len),
        "--output",
        str(Path(workdir) / "processbench.json"),
    ]
    if config.pick_threshold_on:
        args += ["--pick-threshold-on", config.pick_threshold_on]
    else:
        args += ["--threshold", str(config.threshold)]
    if config.tokenizer:
        args += ["--tokenizer", config.tokenizer]
    if config.chat_template:
        args += ["--chat-template", config.chat_template]
    if config.limit:
        args += ["--limit", str(config.limit)]
    return args


def get_hyper(h):
    """The fixed 0.5 threshold against the threshold picked on the GSM8K split."""
    return h.sweep("pick_threshold_on", [None, "gsm8k"])


SWEEP_METRICS = ("results/average/f1", "threshold")
