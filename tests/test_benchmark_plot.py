"""benchmarks/compare.py: tables and plot use the same names, and the plot reads plainly.

The plot's legend used to say ``numpy``, ``torch``, ``gemm-floor`` while the tables said
"NumPy by hand", "PyTorch eager", "GEMM floor", and its log axis was labelled ``2×10⁰``.
Nothing is measured here: the numbers come from the table in benchmarks/README.md (what
``compare.py --replot`` reads), so this runs in about a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location(
        "fastbp_bench_compare", ROOT / "benchmarks" / "compare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _header(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_readme_tables_fit_seven_columns_and_use_the_labels(compare):
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    headers = [_header(line) for line in text.splitlines() if line.startswith("| step |")]
    assert headers
    assert max(len(h) for h in headers) <= 7
    systems = [h for h in headers if "GEMM floor" in h]
    for h in systems:
        assert set(h[1:]) <= set(compare.LABELS.values()), h


def test_replot_round_trip_and_markdown(compare):
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    results = compare.parse_times_table(text)
    first = next(iter(results.values()))
    assert "gemm-floor" in first and all(v > 0 for v in first.values())
    table = compare.markdown_tables(results, list(first))
    again = compare.parse_times_table(table)
    assert again.keys() == results.keys()
    for config in results:
        for system, seconds in results[config].items():
            assert again[config][system] == pytest.approx(seconds, rel=0.01)
    widths = {len(_header(line)) for line in table.splitlines() if line.startswith("| step |")}
    assert max(widths) <= 7


def test_parse_rejects_text_without_a_table(compare):
    with pytest.raises(ValueError, match="no table of step times"):
        compare.parse_times_table("# nothing here\n")


def test_plot_legend_equals_table_headers_and_ticks_are_plain(compare, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    results = {
        "B=1 784-128-10": {"gemm-floor": 34e-6, "fastbp": 102e-6, "numpy": 193e-6, "torch": 202e-6},
        "B=16 784-128-10": {
            "gemm-floor": 81e-6,
            "fastbp": 166e-6,
            "numpy": 129e-6,
            "torch": 277e-6,
        },
    }
    systems = list(results["B=1 784-128-10"])
    out = tmp_path / "plot.png"
    plt.close("all")
    compare.plot(results, systems, str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"
    fig = plt.gcf()
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    header = _header(compare.markdown_tables(results, systems).splitlines()[2])
    assert legend == header[1:] == ["GEMM floor", "fastbp", "NumPy by hand", "PyTorch eager"]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    labels += [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    assert labels, "the y axis has no labels"
    for text in labels:
        assert float(text) > 0  # a plain number
        assert "×" not in text and "10^" not in text and "$" not in text, labels
    assert "1" in labels and "2" in labels
    plt.close(fig)
