"""tfvtg.plot: figures without pyplot, curves and spans where the data says, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError
from tfvtg.grounder import GroundingResult
from tfvtg.moment import Moment
from tfvtg.plot import plot_curves, plot_result, save_figure

pytest.importorskip("matplotlib")


def _result() -> GroundingResult:
    times = np.arange(12) / 3.0
    query_curve = np.linspace(0.1, 0.6, 12)
    decomposition = Decomposition(
        "a man opens a door",
        ("someone opens a door",),
        (("a man walks",), ("a door opens",)),
        "sequentially",
        source="llm",
    )
    curves = {
        "a man opens a door": query_curve,
        "someone opens a door": query_curve[::-1].copy(),
        "a man walks": np.full(12, 0.3),
        "a door opens": np.full(12, 0.4),
    }
    moments = [Moment(1.0, 2.5, 1.0), Moment(0.0, 1.0, 0.5)]
    return GroundingResult(
        "a man opens a door",
        moments,
        decomposition,
        "full",
        curves,
        times,
        4.0,
        0.2,
        {"method": "full", "profile": "default"},
    )


def test_plot_result_draws_every_curve_spans_and_threshold() -> None:
    result = _result()
    fig = plot_result(result, gt=[[1.2, 2.0]])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    # The query's curve comes first and is the thick one; sub-events share no colour with the query.
    assert list(lines)[:4] == ["a man opens a door", "someone opens a door", "a man walks", "a door opens"]
    np.testing.assert_allclose(lines["a man opens a door"].get_xdata(), result.timestamps)
    np.testing.assert_allclose(lines["a man opens a door"].get_ydata(), result.curves["a man opens a door"])
    assert lines["a man opens a door"].get_linewidth() > lines["someone opens a door"].get_linewidth()
    assert lines["a man opens a door"].get_color() == lines["someone opens a door"].get_color()
    assert lines["a man walks"].get_color() != lines["a man opens a door"].get_color()
    assert lines["a man walks"].get_linestyle() == "--"
    # Mask threshold line at 0.2, the top-1 span shaded over [1.0, 2.5], the ranks-2+ bar over [0, 1].
    np.testing.assert_allclose(lines["mask 0.2"].get_ydata(), [0.2, 0.2])
    np.testing.assert_allclose(lines["ranks 2+"].get_xdata(), [0.0, 1.0])
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "top-1 1.0-2.5 s" in legend and "ground truth" in legend
    spans = [patch.get_x() for patch in ax.patches]
    assert 1.0 in spans and 1.2 in spans
    assert ax.get_xlim() == (0.0, 4.0)
    assert "a man opens a door" in ax.get_title()


def test_plot_into_given_axes_and_save_png(tmp_path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_result(_result(), ax=ax) is fig
    out = tmp_path / "sub" / "fig.png"
    save_figure(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_do_not_touch_pyplot_state() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_result(_result())
    assert plt.get_fignums() == before


def test_plot_errors_are_input_errors(tmp_path) -> None:
    times = np.arange(5, dtype=float)
    with pytest.raises(InputError, match="no similarity curve"):
        plot_curves(times, {})
    with pytest.raises(InputError, match="shape"):
        plot_curves(times, {"q": np.zeros(4)})
    with pytest.raises(InputError, match="non-empty"):
        plot_curves(np.zeros(0), {"q": np.zeros(0)})
    with pytest.raises(InputError, match="start and an end"):
        plot_curves(times, {"q": np.zeros(5)}, gt=[[1.0]])
    with pytest.raises(InputError, match="cannot write figure"):
        save_figure(plot_curves(times, {"q": np.zeros(5)}), tmp_path / "fig.unknownformat")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(InputError, match="cannot write figure .*fig.png"):
        save_figure(plot_curves(times, {"q": np.zeros(5)}), tmp_path / "file" / "fig.png")
