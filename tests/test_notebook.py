"""notebooks/analysis.ipynb runs top to bottom against the curated baselines under results/ (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")  # dev extras; a GPU host without them skips this file
NotebookClient = pytest.importorskip("nbclient").NotebookClient

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "analysis.ipynb"


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.delenv("GDNBENCH_RESULTS", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on any cell error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum(1 for o in outputs if "image/png" in o.get("data", {})) >= 2
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "NVIDIA H100 80GB HBM3 (sm90)" in text
