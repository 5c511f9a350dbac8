"""notebooks/walkthrough.ipynb executes end to end (nbclient) on the tiny BLIP-2 and a real clip."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_notebook_runs(tiny_blip2_dir, cup_video, tmp_path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel inherits this environment: the tiny model, the clip, a private cache, no LLM, no display.
    monkeypatch.setenv("TFVTG_MODEL", str(tiny_blip2_dir))
    monkeypatch.setenv("TFVTG_VIDEO", str(cup_video))
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert "25 frames over 8.10 s at 3 fps" in text
    assert "Moment(start=" in text
    assert "full | curves: 4" in text  # the decomposition's 4 distinct descriptions were localised
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2  # g.plot and plot_result
    assert (tmp_path / "cache" / "features").is_dir()  # the features went to the cache the notebook was given
