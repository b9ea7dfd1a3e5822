"""Short runs of ``fastbp.examples.mnist_cnn`` on a tiny MNIST look-alike (a few seconds)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import fastbp.data
import fastbp.serialization
from fastbp.examples import mnist_cnn

LAST_LINE = re.compile(r"test accuracy: [01]\.\d{4}$")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    """Each class is a bright bar at its own row, plus noise: learnable in one short epoch."""
    directory = tmp_path_factory.mktemp("synthetic-mnist-cnn")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 256), ("t10k", 100)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        for c in range(10):
            images[labels == c, 2 * c + 4 : 2 * c + 6, 4:24] = 255
        fastbp.data.write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        fastbp.data.write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def _run(capsys, *argv: str) -> tuple[float, str]:
    accuracy = mnist_cnn.main(list(argv))
    out = capsys.readouterr().out
    return accuracy, out


def test_one_short_epoch_learns_and_prints_the_table(synthetic_dir, capsys):
    acc, out = _run(capsys, "--data-dir", str(synthetic_dir), "--epochs", "2", "--no-progress",
                    "--batch-size", "16")  # fmt: skip
    lines = out.strip().split("\n")
    assert LAST_LINE.match(lines[-1]) and lines[-1].endswith(f"{acc:.4f}")
    assert [line.split()[1] for line in lines[:-1]] == ["1/2", "2/2"]
    assert acc > 0.4  # chance is 0.1


def test_resume_continues_exactly_like_an_uninterrupted_run(synthetic_dir, tmp_path, capsys):
    common = ["--data-dir", str(synthetic_dir), "--no-progress", "--limit-train", "64",
              "--limit-test", "20", "--batch-size", "16"]  # fmt: skip
    whole = tmp_path / "whole.npz"
    part = tmp_path / "part.npz"
    _run(capsys, *common, "--epochs", "2", "--save", str(whole))
    _run(capsys, *common, "--epochs", "1", "--save", str(part))
    # Epoch 0's cosine rate does not depend on the planned total, so resuming with --epochs 2
    # replays what the uninterrupted run did.
    _run(capsys, *common, "--epochs", "2", "--resume", str(part), "--save", str(part))
    a = fastbp.serialization.load(whole)
    b = fastbp.serialization.load(part)
    assert a["epoch"] == b["epoch"] == 2
    assert set(a["model"]) == {f"{i}.{k}" for i in (0, 3, 8, 11) for k in ("weight", "bias")}
    for name, value in a["model"].items():
        np.testing.assert_array_equal(value, b["model"][name])


def test_resume_rejects_a_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    fastbp.serialization.save({"format": "fastbp-mnist-mlp", "version": 1}, path)
    with pytest.raises(SystemExit, match="not a version-1 checkpoint of fastbp.examples.mnist_cnn"):
        mnist_cnn.main(["--resume", str(path)])


def test_model_shapes():
    model = mnist_cnn.build_model(seed=0)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (3136, 128), (128,),
                      (128, 10), (10,)]  # fmt: skip
