"""Executes every colab/ notebook top to bottom in tiny mode (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLAB = ROOT / "colab"
NOTEBOOKS = sorted(p.name for p in COLAB.glob("*.ipynb"))
# What each notebook must leave in its working folder (proof that its last cells ran).
EXPECTED_FILES = {
    "quickstart.ipynb": ["step_scores.png"],
    "search.ipynb": ["search_accuracy.png"],
    "hf_checkpoint.ipynb": ["processbench.json"],
}


def test_notebooks_exist_and_match_generator():
    assert set(NOTEBOOKS) == set(EXPECTED_FILES), NOTEBOOKS
    r = subprocess.run([sys.executable, str(COLAB / "make_notebooks.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_saved_with_their_tiny_outputs(name):
    """`make notebooks` saved each with its TINY run's outputs (a figure among them), without errors
    or tqdm's widget warning."""
    import nbformat

    nb = nbformat.read(COLAB / name, as_version=4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outs), f"{name} has no saved figure: run make notebooks"
    assert not [o for o in outs if o.output_type == "error"]
    assert not any("TqdmWarning" in o.get("text", "") for o in outs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_guarded_install_and_tiny_flag(name):
    import nbformat

    nb = nbformat.read(COLAB / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    install = code[0].source
    assert 'find_spec("prm_jax") is None' in install
    assert "jax[cuda12]" in install and "jax[tpu]" in install
    params = code[1]
    assert "parameters" in params.metadata.get("tags", []) and "TINY = True" in params.source


# search.ipynb (about 2 minutes) runs in the slow tier (`make test-all`); the others run in CI.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "search.ipynb" else n for n in NOTEBOOKS]
)
def test_notebook_executes(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # The kernel spec runs `python`: make it this venv's interpreter. One CPU device is enough.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(COLAB / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    for f in EXPECTED_FILES[name]:
        assert (tmp_path / f).is_file() and (tmp_path / f).stat().st_size > 0, f
