"""End-to-end tests of ``fastbp.examples.mnist_mlp`` and ``benchmarks/time_to_98.py``.

Runs that need the real MNIST files use ``$FASTBP_DATA`` and are skipped without it; the
others write a tiny, easily learnable MNIST look-alike with ``fastbp.data.write_idx``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp.data
import fastbp.serialization
from fastbp.examples import mnist_mlp

REPO = Path(__file__).resolve().parents[1]
MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
LAST_LINE = re.compile(r"test accuracy: [01]\.\d{4}")
SMALL = ["--hidden", "64", "--no-progress"]


def _has_mnist(directory: Path) -> bool:
    return all(
        (directory / name).is_file() or (directory / (name + ".gz")).is_file()
        for name in MNIST_NAMES
    )


@pytest.fixture(scope="module")
def mnist_dir() -> Path:
    """The real MNIST directory from ``$FASTBP_DATA`` (skip when absent)."""
    env = os.environ.get("FASTBP_DATA")
    if not env:
        pytest.skip("FASTBP_DATA is not set")
    directory = Path(env).expanduser()
    if not _has_mnist(directory):
        pytest.skip(f"FASTBP_DATA={env} does not hold the four MNIST files")
    return directory


@pytest.fixture(autouse=True, scope="module")
def _load_mnist_once():
    # Decompressing the real files takes ~0.5 s (more on a busy machine) and some tests run
    # the example three times; load_data slices and copies, so sharing the arrays is safe.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist_mlp, "load_mnist", functools.cache(mnist_mlp.load_mnist))
        yield


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small MNIST look-alike: each class is a bright bar at its own row, plus noise."""
    write_idx = getattr(fastbp.data, "write_idx", None)
    if write_idx is None:
        pytest.skip("fastbp.data.write_idx is not available")
    directory = tmp_path_factory.mktemp("synthetic-mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        for c in range(10):
            images[labels == c, 2 * c + 4 : 2 * c + 6, 4:24] = 255
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def _last_line(out: str) -> str:
    return out.rstrip("\n").split("\n")[-1]


def _params(checkpoint: Path) -> dict[str, np.ndarray]:
    return fastbp.serialization.load(checkpoint)["model"]


# --------------------------------------------------------------------------------------------
# Real MNIST
# --------------------------------------------------------------------------------------------


def test_short_run_learns_and_prints_accuracy_last(mnist_dir, capsys):
    # ~80 steps: with lr 0.1 and momentum 0.9 far fewer leave the accuracy too noisy to test.
    acc = mnist_mlp.main(
        ["--data-dir", str(mnist_dir), "--limit-train", "5000", "--limit-test", "500"]
        + ["--epochs", "1", "--batch-size", "64", *SMALL]
    )
    out = capsys.readouterr().out
    assert acc > 0.7  # chance is 0.1
    last = _last_line(out)
    assert LAST_LINE.fullmatch(last), last
    assert last == f"test accuracy: {acc:.4f}"
    assert "epoch 1/1" in out and "train loss" in out


def test_resume_matches_uninterrupted_run(mnist_dir, tmp_path, capsys):
    common = ["--data-dir", str(mnist_dir), "--limit-train", "2000", "--limit-test", "500"]
    common += [*SMALL, "--seed", "3"]
    full = mnist_mlp.main([*common, "--epochs", "2", "--save", str(tmp_path / "full.npz")])
    mnist_mlp.main([*common, "--epochs", "1", "--save", str(tmp_path / "half.npz")])
    assert fastbp.serialization.load(tmp_path / "half.npz")["epoch"] == 1
    capsys.readouterr()
    resumed = mnist_mlp.main(
        ["--data-dir", str(mnist_dir), "--no-progress", "--epochs", "2"]
        + ["--resume", str(tmp_path / "half.npz"), "--save", str(tmp_path / "resumed.npz")]
    )
    out = capsys.readouterr().out
    assert "resumed" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    assert resumed == full
    # Not just the accuracy: the weights are bit-identical.
    a, b = _params(tmp_path / "full.npz"), _params(tmp_path / "resumed.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    history = fastbp.serialization.load(tmp_path / "resumed.npz")["history"]
    assert len(history["accuracy"]) == 2 and history["accuracy"][-1] == resumed


# --------------------------------------------------------------------------------------------
# Synthetic data (always runs)
# --------------------------------------------------------------------------------------------


def test_synthetic_data_end_to_end(synthetic_dir, capsys):
    acc = mnist_mlp.main(["--data-dir", str(synthetic_dir), "--epochs", "2", *SMALL])
    assert acc > 0.9
    assert _last_line(capsys.readouterr().out) == f"test accuracy: {acc:.4f}"


def test_adam_and_linear_model(synthetic_dir, capsys):
    acc = mnist_mlp.main(
        ["--data-dir", str(synthetic_dir), "--epochs", "2", "--hidden", "none"]
        + ["--optimizer", "adam", "--lr", "0.01", "--no-progress"]
    )
    assert acc > 0.9


def test_plain_progress_without_tqdm(synthetic_dir, monkeypatch, capsys):
    monkeypatch.setattr(mnist_mlp, "_tqdm", None)
    mnist_mlp.main(["--data-dir", str(synthetic_dir), "--epochs", "1", "--hidden", "16"])
    captured = capsys.readouterr()
    assert re.search(r"epoch 1/1 \[5/5\] loss \d+\.\d{4}", captured.err), captured.err
    assert LAST_LINE.fullmatch(_last_line(captured.out))


def test_resume_rejects_other_architecture(synthetic_dir, tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt.npz")
    mnist_mlp.main(["--data-dir", str(synthetic_dir), "--epochs", "1", *SMALL, "--save", ckpt])
    with pytest.raises(SystemExit, match="--hidden"):
        mnist_mlp.main(["--data-dir", str(synthetic_dir), "--hidden", "32", "--resume", ckpt])


def test_resume_of_finished_run_only_evaluates(synthetic_dir, tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt.npz")
    acc = mnist_mlp.main(
        ["--data-dir", str(synthetic_dir), "--epochs", "1", *SMALL, "--save", ckpt]
    )
    again = mnist_mlp.main(["--data-dir", str(synthetic_dir), "--epochs", "1", "--resume", ckpt])
    out = capsys.readouterr().out
    assert again == acc
    assert out.count("epoch 1/1") == 1  # printed by the first run only


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="cannot load MNIST"):
        mnist_mlp.main(["--data-dir", str(tmp_path), "--epochs", "1", "--no-progress"])


def test_save_into_missing_directory_fails_before_training(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        mnist_mlp.main(["--data-dir", str(tmp_path), "--save", str(tmp_path / "no" / "c.npz")])


@pytest.mark.parametrize("hidden", ["0", "12,x", "-3"])
def test_bad_hidden_is_rejected(hidden, capsys):
    with pytest.raises(SystemExit):
        mnist_mlp.parse_args(["--hidden", hidden])
    assert "--hidden" in capsys.readouterr().err


def test_plot_writes_png(synthetic_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    mnist_mlp.main(["--data-dir", str(synthetic_dir), "--epochs", "2", *SMALL, "--plot", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert LAST_LINE.fullmatch(_last_line(capsys.readouterr().out))


def test_plot_without_matplotlib_names_the_fix(monkeypatch, tmp_path):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match="pip install matplotlib") as info:
        mnist_mlp.main(["--plot", str(tmp_path / "x.png"), "--data-dir", str(tmp_path)])
    assert "examples" in str(info.value)


# --------------------------------------------------------------------------------------------
# benchmarks/time_to_98.py
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("time_to_98", REPO / "benchmarks/time_to_98.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_fastbp_part_runs(bench, synthetic_dir, tmp_path):
    init = tmp_path / "init.npz"
    result = bench.run_system(
        "fastbp",
        data_dir=str(synthetic_dir),
        max_epochs=2,
        target=0.5,
        limit_train=300,
        init_out=str(init),
    )
    assert result["epochs_to_target"] == 1 and len(result["epochs"]) == 1
    assert result["final_accuracy"] >= 0.5
    assert 0 < result["time_to_target"] == result["train_time"]
    assert result["peak_rss_mb"] > 0
    with np.load(init) as arrays:
        assert [arrays[k].shape for k in arrays.files] == [
            (784, 512),
            (512,),
            (512, 256),
            (256,),
            (256, 10),
            (10,),
        ]
    report = bench.format_report(
        [result, {"system": "torch", "skipped": "skipped (torch not installed)"}], 0.5
    )
    assert "| fastbp" in report and "skipped" in report and "n/a" in report


def test_benchmark_uses_the_examples_preprocessing(bench, synthetic_dir):
    x_train, y_train, x_test, y_test = bench._load_data(str(synthetic_dir), 50, 20)
    want = mnist_mlp.load_data(synthetic_dir, 50, 20)
    for got, expected in zip((x_train, y_train, x_test, y_test), want, strict=True):
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype


def test_benchmark_torch_mirrors_fastbp(bench, synthetic_dir, tmp_path):
    torch = pytest.importorskip("torch")
    init = tmp_path / "init.npz"
    kwargs = dict(data_dir=str(synthetic_dir), max_epochs=1, target=2.0, limit_train=256)
    ours = bench.run_system("fastbp", init_out=str(init), **kwargs)
    threads = torch.get_num_threads()
    try:  # run_system pins torch to one thread: undo that for the other tests
        theirs = bench.run_system("torch", init_in=str(init), **kwargs)
    finally:
        torch.set_num_threads(threads)
    # Same initial weights, batches and update rule: the runs agree up to float rounding.
    assert ours["epochs"][0]["loss"] == pytest.approx(theirs["epochs"][0]["loss"], rel=1e-3)
    assert abs(ours["final_accuracy"] - theirs["final_accuracy"]) <= 0.02
    report = bench.format_report([ours, theirs], 2.0)
    assert "mean epoch time ratio" in report
