"""Builds the Colab notebooks in this folder from the cell sources below (run it after editing them).

    python colab/make_notebooks.py            # writes colab/*.ipynb (keeps saved outputs of unchanged notebooks)
    python colab/make_notebooks.py --execute  # also runs each in TINY mode on this CPU and saves its outputs
    python colab/make_notebooks.py --check    # exits 1 if a notebook's cells differ from their source here
                                              # (`make notebooks` runs --execute)

Each notebook opens with the Colab install cell (skipped when `prm_jax` is already importable, e.g.
in a local checkout or under the test), then a parameter cell with `TINY = True`: tiny mode runs top
to bottom on a laptop CPU in a minute or two; `TINY = False` is the size meant for a GPU/TPU runtime.
Notebooks call library functions only; the code they show is the API a user would call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO_URL = "https://github.com/prm-jax/prm-jax.git"

INSTALL = f'''\
# Colab set-up (GPU or TPU runtime). Skipped when prm_jax is already importable (local checkout, tests).
PRM_JAX_SOURCE = "{REPO_URL}"  # where prm-jax is installed from: a git URL (your fork) or a local folder
PRM_JAX_REF = "main"  # the branch or tag of a git source
import importlib.util, os, shutil, subprocess, sys
if importlib.util.find_spec("prm_jax") is None:
    src = PRM_JAX_SOURCE if os.path.isdir(PRM_JAX_SOURCE) else "prm-jax"
    if src == "prm-jax" and not os.path.isdir(src):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", PRM_JAX_REF, PRM_JAX_SOURCE, src], check=True)
    if shutil.which("nvidia-smi"):
        accel = "jax[cuda12]"
    elif os.path.exists("/dev/accel0") or "COLAB_TPU_ADDR" in os.environ or "TPU_NAME" in os.environ:
        accel = "jax[tpu]"
    else:
        accel = "jax"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-U", accel], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", src], check=True)
    sys.path.insert(0, os.path.abspath(src))  # editable installs are not seen until a restart
'''

LOCATE = """\
import pathlib, prm_jax
ROOT = pathlib.Path(prm_jax.__file__).resolve().parents[1]  # the repository: experiments/ lives here
import jax
print("jax", jax.__version__, "backend", jax.default_backend(), "devices", jax.device_count())
"""


def _cells(spec):
    cells = []
    for i, (kind, src) in enumerate(spec):
        src = src.strip("\n")
        if kind == "md":
            cells.append(new_markdown_cell(src))
        else:
            cell = new_code_cell(src)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)
        cells[-1]["id"] = f"cell-{i:02d}"  # stable ids keep regenerated notebooks diff-free
    return cells


def build(spec) -> nbformat.NotebookNode:
    """Returns a notebook from [(kind, source)] where kind is 'md', 'code' or 'params'."""
    nb = new_notebook(cells=_cells(spec))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["accelerator"] = "GPU"
    nb.metadata["colab"] = {"provenance": []}
    return nb


QUICKSTART = [
    (
        "md",
        """
# prm-jax quickstart: a process reward model on the arithmetic task

Train a small BCE process reward model (PRM) on the synthetic arithmetic task, whose step labels are exact,
then read its per-step scores on a correct solution and on one with an injected error.

- `TINY = True` (this CPU, about a minute; the saved outputs below are this run): a 2-layer model trained
  for 12 steps. It shows the plumbing (the loss falls, scores are read at each step marker), not a good
  PRM: its scores barely separate the right step from the wrong one.
- `TINY = False` (a Colab GPU/TPU runtime): the `small` model for the config's full schedule (not the
  saved outputs), where the scores are meant to separate the injected error from the correct steps.

**Set-up:** the first cell installs prm-jax in a Colab runtime from `PRM_JAX_SOURCE` (a git URL, this repository by default: set your fork or a local folder) at `PRM_JAX_REF`, with `jax[cuda12]` or `jax[tpu]` for the runtime's accelerator; it does nothing where prm-jax is already importable.
""",
    ),
    ("code", INSTALL),
    (
        "params",
        """
TINY = True                      # tiny: a CPU runs this notebook in a minute or two
WORKDIR = "runs/quickstart_bce"  # the training run (checkpoints, metrics.jsonl, TensorBoard events)
""",
    ),
    ("code", LOCATE),
    (
        "md",
        "## Train\nThe config is `experiments/arith_prm.py` (variant `bce,tiny` or `bce,small`); any key can be overridden.",
    ),
    (
        "code",
        """
from prm_jax import config as config_lib, loop
cfg = config_lib.load_config(str(ROOT / "experiments" / ("arith_prm.py:bce,tiny" if TINY else "arith_prm.py:bce,small")))
if TINY:
    config_lib.apply_overrides(cfg, ["--config.train.steps=12", "--config.train.batch_size=8",
                                     "--config.train.ckpt_every=12", "--config.train.eval_every=12", "--config.data.eval_frac=0.05",
                                     "--config.train.eval_batches=1"])
final = loop.run(cfg, WORKDIR)
{k: round(v, 4) for k, v in final.items() if isinstance(v, float)}
""",
    ),
    (
        "code",
        """
import matplotlib.pyplot as plt
from prm_jax.metrics import read_jsonl
rows = [r for r in read_jsonl(f"{WORKDIR}/metrics.jsonl") if "loss" in r]
plt.figure(figsize=(5, 3)); plt.plot([r["step"] for r in rows], [r["loss"] for r in rows], "o-")
plt.xlabel("step"); plt.ylabel("BCE loss"); plt.title("training loss"); plt.show()
""",
    ),
    (
        "md",
        "## Per-step scores\nThe arithmetic task's verifier knows which step is wrong; the PRM's score is read at each step's closing marker.",
    ),
    (
        "code",
        """
import numpy as np
from prm_jax import verifier, plots
from prm_jax.data import arith
prm = verifier.load_verifier("score", workdir=WORKDIR)
problem = arith.sample_problem(arith.ArithConfig(min_steps=3, max_steps=3), np.random.default_rng(3))
gold, _ = arith.solve(problem)
bad, kind = arith.solve(problem, np.random.default_rng(0), corrupt_at=1, kind="carry")
scores = prm.step_scores([problem.text, problem.text], [gold, bad])
for name, steps, sc in (("gold", gold, scores[0]), (f"corrupted ({kind})", bad, scores[1])):
    print(name, [round(float(x), 3) for x in sc], "exact:", arith.check_steps(problem, steps))
""",
    ),
    (
        "code",
        """
from IPython.display import Image, display
png = plots.plot_step_scores(bad, scores[1], labels=[float(x) for x in arith.check_steps(problem, bad)],
                             path="step_scores.png", title=problem.text)
display(Image(png))
""",
    ),
]

SEARCH = [
    (
        "md",
        """
# Reward-guided search: best-of-N, step-level beam search, PAV beam search

A small policy samples arithmetic solutions; verifiers pick among them (best-of-N), or guide a beam search
step by step (BCE-PRM ranking; PAV ranking by Q + alpha * A). Every method counts its generated tokens.
Tiny mode (the saved outputs) trains everything for a few steps, so the numbers only show the plumbing;
`TINY = False` trains the demo's sizes (`prm-jax demo` runs the full comparison and writes report.md).

**Set-up:** the first cell installs prm-jax in a Colab runtime from `PRM_JAX_SOURCE` (a git URL, this repository by default: set your fork or a local folder) at `PRM_JAX_REF`, with `jax[cuda12]` or `jax[tpu]` for the runtime's accelerator; it does nothing where prm-jax is already importable.
""",
    ),
    ("code", INSTALL),
    (
        "params",
        """
TINY = True
WORKDIR = "runs/search_nb"
N = 4 if TINY else 16          # samples per problem / beams
PROBLEMS = 4 if TINY else 64
ALPHA = 0.5                    # PAV: Q + alpha * A
""",
    ),
    ("code", LOCATE),
    (
        "md",
        "## Train a policy and two verifiers\nThe stage configs of `experiments/`: policy SFT, then a BCE-PRM and a PAV on MC-labelled data (tiny: the synthetic fixture).",
    ),
    (
        "code",
        """
import os
from prm_jax import config as config_lib, loop
size = "tiny" if TINY else "demo"
short = ["--config.train.steps=6", "--config.train.ckpt_every=6", "--config.train.eval_every=0"] if TINY else []
def fit(spec, out, extra=()):
    cfg = config_lib.apply_overrides(config_lib.load_config(str(ROOT / "experiments" / spec)), short + list(extra))
    return loop.run(cfg, os.path.join(WORKDIR, out))
fit(f"arith_policy_sft.py:{size}", "policy")
policy_dir = os.path.join(WORKDIR, "policy")
for name in ("bce", "pav"):
    fit(f"arith_verifier.py:{name},{size}", name, [f"--config.init.workdir={policy_dir}"])
""",
    ),
    (
        "code",
        """
import jax, numpy as np
from prm_jax import sampling, search, verifier
from prm_jax.data import arith
policy = sampling.load_policy(policy_dir, max_batch=64)  # parameters only; the run's tokenizer and marker
bce = verifier.load_verifier("score", workdir=os.path.join(WORKDIR, "bce"))
pav = verifier.load_verifier("score", workdir=os.path.join(WORKDIR, "pav"))
task = arith.ArithConfig(min_steps=2, max_steps=3, max_result=199)
rng_np = np.random.default_rng(7)
problems = [arith.sample_problem(task, rng_np) for _ in range(PROBLEMS)]
texts, gold = [p.text for p in problems], [p.answer for p in problems]
""",
    ),
    (
        "md",
        "## Best-of-N against majority vote, and the two beam searches\n`search.evaluate_methods` is the comparison `prm-jax demo` and `prm-jax search` run. "
        "In TINY mode the policy has trained for a few steps and reaches no right answer, so every method is at 0 "
        "(the saved outputs): the cells show the calls, the token counts and the plot; `report.md` of `prm-jax demo` "
        "has the real comparison.",
    ),
    (
        "code",
        """
res = search.evaluate_methods(
    policy, {"bce": bce, "pav": pav}, texts, gold, jax.random.PRNGKey(0), n=N, beam_width=2, beam_max_steps=4,
    alpha=ALPHA, beams={"beam_bce": {"rank": "bce", "advantage": None, "answer": "bce"},
                        "beam_pav": {"rank": "bce", "advantage": "pav", "answer": "bce"}})
per = res["mean_gen_tokens_per_solution"]
shown = ["majority", "bce/min/argmax", "bce/min/weighted_vote", "beam_bce", "beam_pav"]
tokens = {k: res["tokens"].get(f"{k}_gen_per_problem", per * N) for k in shown}
for k in shown:
    c = res["curves"][k]
    print(f"{k:22s} accuracy {c['acc'][-1]:.2f} [{c['lo'][-1]:.2f}, {c['hi'][-1]:.2f}]   generated tokens/problem {tokens[k]:.0f}")
""",
    ),
    (
        "code",
        """
from IPython.display import Image, display
from prm_jax import plots, report
by_n, by_tokens = report.plot_curves(res, shown)  # searches at their measured token budgets
png = plots.plot_accuracy_vs_compute(by_tokens, "search_accuracy.png", title="Search at equal compute",
                                     caption=f"{PROBLEMS} problems, N up to {N}; bands and bars: bootstrap 95% CI over problems")
display(Image(png))
""",
    ),
    (
        "md",
        "## The PRM as a dense reward for RL\n`prm-jax rl-compare` as a call: from the SFT policy, RL with the outcome reward "
        "alone, the frozen BCE-PRM's step rewards credited by PURE's min-form, and PRIME's implicit PRM trained online "
        "(`experiments/arith_rl.py`; `prm_jax.rl_report.compare`). Each run checkpoints and resumes. In TINY mode two "
        "iterations of 16 samples on one seed show the plumbing; `TINY = False` runs 3 seeds of the demo's size "
        "(`runs/rl/report.md` of `prm-jax rl-compare` on the demo's runs is the measured comparison).",
    ),
    (
        "code",
        """
from prm_jax import rl_report
rl_over = [f"--config.policy_workdir={policy_dir}", f"--config.verifiers.prm={WORKDIR}/bce",
           f"--config.verifiers.qpi={WORKDIR}/bce", f"--config.verifiers.pav={WORKDIR}/pav"]  # bce: soft MC = Q^pi
figs = rl_report.compare(str(ROOT / "experiments" / f"arith_rl.py:outcome,{size}"), os.path.join(WORKDIR, "rl"),
                         [0] if TINY else [0, 1, 2], sources=["outcome", "prm_min", "prime"], overrides=rl_over)
for name, f in figs["sources"].items():
    fa = f["final_accuracy"]
    print(f"{name:8s} held-out accuracy {f['initial_accuracy']:.2f} -> {fa['mean']:.2f}")
display(Image(figs["png"]))
""",
    ),
]

HF_CHECKPOINT = [
    (
        "md",
        """
# Score solutions with a Hugging Face checkpoint: ProcessBench-style evaluation

Load a local Hugging Face folder (a Qwen2.5-Math-PRM-style model with a score head, or any Llama/Qwen2
checkpoint saved by prm-jax), score step-wise solutions, predict the first wrong step, and compute
ProcessBench's accuracy on erroneous and correct cases and their F1. In tiny mode the notebook first
writes a random tiny checkpoint and a character tokenizer, so the numbers are chance level (the saved
outputs); `TINY = False` reads your checkpoint and a real ProcessBench split.

**Set-up:** the first cell installs prm-jax in a Colab runtime from `PRM_JAX_SOURCE` (a git URL, this repository by default: set your fork or a local folder) at `PRM_JAX_REF`, with `jax[cuda12]` or `jax[tpu]` for the runtime's accelerator; it does nothing where prm-jax is already importable.
""",
    ),
    ("code", INSTALL),
    (
        "params",
        """
TINY = True
CHECKPOINT = "tiny_hf"           # TINY=False: your local HF folder (model + score_head.safetensors)
DATA = None                      # TINY=False: a ProcessBench split file, e.g. "ProcessBench/gsm8k.json"
MARKER = "\\n\\n"                # the step marker the PRM was trained with
THRESHOLD = 0.5
""",
    ),
    ("code", LOCATE),
    (
        "md",
        "## A tiny random checkpoint (tiny mode only)\nA character-level tokenizer built locally and a random `tiny` model, saved with `prm_jax.hf.save_checkpoint`: nothing is downloaded.",
    ),
    (
        "code",
        """
if TINY:
    import string, jax
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from prm_jax import hf, model
    chars = sorted(set(string.printable))
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<eos>"] + chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\\\s\\\\S]"), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                            eos_token="<eos>").save_pretrained(CHECKPOINT)
    cfg = model.ModelConfig.preset("tiny", vocab_size=len(vocab), max_seq_len=4096)
    hf.save_checkpoint(CHECKPOINT, cfg, model.init_params(cfg, jax.random.PRNGKey(0)))
    DATA = str(ROOT / "experiments" / "fixtures" / "processbench_gsm8k.json")  # 3 real ProcessBench cases
""",
    ),
    ("md", "## Load, score, evaluate"),
    (
        "code",
        """
import json, numpy as np
from prm_jax import evaluate, heads
from prm_jax.verifier import score_step_probs
from prm_jax.data import readers
from prm_jax.data.tokenizers import HFTokenizer
# the head is told from config.json (a public family such as 'qwen_prm' renders as its authors do)
family = heads.detect_family(CHECKPOINT)
kw = dict(tokenizer=HFTokenizer(CHECKPOINT), marker=MARKER) if family in ("prm_jax", "token_classification") else {}
verifier = heads.load_verifier(family, CHECKPOINT, max_batch=4, max_len=4096, **kw)
cases = readers.read_all("processbench", DATA)
probs, truncated = score_step_probs(verifier, cases, batch_size=4)
pred = evaluate.predict_first_error(probs, THRESHOLD)
labels = np.asarray([c.first_error() for c in cases])
metrics = evaluate.processbench_metrics(pred, labels)
print(f"{len(cases)} cases ({truncated} with steps cut by max_len)"); print(metrics)
json.dump({"checkpoint": CHECKPOINT, "threshold": THRESHOLD, "metrics": metrics,
           "pred": pred.tolist(), "label": labels.tolist()}, open("processbench.json", "w"), indent=1)
""",
    ),
    (
        "code",
        """
from IPython.display import Image, display
from prm_jax import plots
i = int(np.argmax(labels >= 0)) if (labels >= 0).any() else 0
# ProcessBench labels the steps up to the first error; the ones after it are unlabelled
truth = [1.0 if labels[i] < 0 or t < labels[i] else (0.0 if t == labels[i] else None) for t in range(len(probs[i]))]
png = plots.plot_step_scores(cases[i].steps[:len(probs[i])], probs[i], labels=truth, path="case_steps.png",
                             threshold=THRESHOLD, title=f"case {cases[i].id}: first error {labels[i]}, predicted {pred[i]}")
display(Image(png))
""",
    ),
]

NOTEBOOKS: dict[str, list] = {
    "quickstart.ipynb": QUICKSTART,
    "search.ipynb": SEARCH,
    "hf_checkpoint.ipynb": HF_CHECKPOINT,
}


def _sources(nb) -> list:
    """Returns what --check compares: each cell's type, source and tags (not outputs or counts)."""
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def execute(nb, workdir: str) -> None:
    """Runs `nb` top to bottom in `workdir` with its TINY setting (nbclient; this interpreter's kernel)."""
    import os

    from nbclient import NotebookClient

    env = os.environ
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]  # the kernel runs `python`
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["MPLBACKEND"] = "Agg"
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _tidy(cell.outputs)


def _tidy(outputs: list) -> list:
    """Returns a cell's outputs as a reader wants them saved: each stream in one block, a progress
    bar by its last state only, without the warning that Jupyter has no widget for tqdm."""
    import re

    from nbformat.v4 import new_output

    out, streams = [], {}
    for o in outputs:
        if o.output_type != "stream":
            out.append(o)
            continue
        if o.name not in streams:
            streams[o.name] = new_output("stream", name=o.name, text="")
            out.append(streams[o.name])
        streams[o.name].text += o.text
    for st in streams.values():
        lines, bars = [], {}
        for line in re.split(r"[\r\n]+", st.text):
            if not line.strip() or "TqdmWarning" in line or "from .autonotebook import" in line:
                continue
            m = re.match(r"([^:|]{1,40}):\s+\d+%\|", line)  # a tqdm bar: keep its last state in place
            if m:
                if m.group(1) not in bars:
                    bars[m.group(1)] = len(lines)
                    lines.append(line)
                lines[bars[m.group(1)]] = line
                continue
            lines.append(line)
        st.text = "\n".join(lines) + "\n"
    return [o for o in out if o.output_type != "stream" or o.text.strip()]


def write_all(check: bool = False, run: bool = False) -> int:
    """Writes (or, with check, compares) every notebook; returns the number that differ. `run`
    executes each in TINY mode first and saves it with its outputs."""
    import tempfile

    differ = 0
    for name, spec in NOTEBOOKS.items():
        path = HERE / name
        nb = build(spec)
        old = nbformat.read(path, as_version=4) if path.exists() else None
        if check:
            if old is None or _sources(old) != _sources(nb):
                print(f"{path} is out of date; run python colab/make_notebooks.py", file=sys.stderr)
                differ += 1
            continue
        if run:
            with tempfile.TemporaryDirectory() as tmp:
                execute(nb, tmp)
        elif old is not None and _sources(old) == _sources(nb):
            print(f"{path} unchanged (outputs kept)")
            continue
        path.write_text(nbformat.writes(nb) + "\n")
        print(f"wrote {path}" + (" with its TINY outputs" if run else ""))
    return differ


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare the notebooks' cells with their sources here")
    ap.add_argument("--execute", action="store_true", help="run each notebook in TINY mode and save its outputs")
    args = ap.parse_args()
    sys.exit(1 if write_all(args.check, args.execute) else 0)
