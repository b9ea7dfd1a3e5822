"""benchmarks/cnn_systems.py and benchmarks/time_cnn_epoch.py compute what their tables claim.

Each system's CNN step must be the same computation as fastbp's (same loss, same weights
after a few steps), the layer rows the same gradients, and ``--quick`` must print every table.
Nothing is timed: tiny sizes, a few seconds. torch and JAX rows are checked only where those
are installed (not in CI).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # the scripts import their siblings (compare, mlp_systems)
    spec = importlib.util.spec_from_file_location(f"fastbp_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cs():
    return _load("cnn_systems")


def _weights(system: str, step) -> list[np.ndarray]:
    """The parameters after the steps run so far, in fastbp's layout."""
    if system.startswith("fastbp"):
        return [p.data for p in step.model.parameters()]
    if system == "numpy":
        return step.params
    if system == "torch":
        arrays = [p.detach().numpy() for p in step.net.parameters()]
        return [a.T if a.ndim == 2 else a for a in arrays]  # torch's Linear is (out, in)
    return [np.asarray(p) for p in step.state["params"]]  # jax


def _float(loss) -> float:
    detach = getattr(loss, "detach", None)  # a torch loss still has its graph
    return float(detach() if detach else loss)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum"])
def test_every_system_takes_the_same_step(cs, optimizer):
    systems = [s for s in cs.available() if s != "gemm-floor"]
    steps = {s: cs.STEPS[s](3, optimizer) for s in systems}
    for _ in range(3):
        losses = {s: _float(step()) for s, step in steps.items()}
        for s, loss in losses.items():
            assert loss == pytest.approx(losses["fastbp"], rel=1e-4), (s, losses)
    ours = _weights("fastbp", steps["fastbp"])
    for s in systems:
        for i, (a, b) in enumerate(zip(ours, _weights(s, steps[s]), strict=True)):
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5, err_msg=f"{s} param {i}")
    # The weights moved: a step that did nothing would pass the checks above.
    x0 = cs.cnn_problem(3)[2]
    assert all(not np.array_equal(a, b) for a, b in zip(ours, x0, strict=True))


def test_numpy_im2col_and_col2im_are_adjoint(cs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    k, pad = 3, 1
    cols = cs.im2col(x, k, pad)
    c = rng.standard_normal(cols.shape)
    # <im2col(x), c> == <x, col2im(c)> for every x, c
    assert np.sum(cols * c) == pytest.approx(np.sum(x * cs.col2im(c, x.shape, k, pad)))


@pytest.mark.parametrize("row", [0, 1])
def test_conv_layer_rows_agree(cs, row):
    _, shape, out_channels, k, pad = cs.QUICK_CONV_LAYERS[row]
    systems = [s for s in cs.available(cs.LAYER_SYSTEMS) if s != "gemm-floor"]
    grads = {s: cs.make_conv_layer(s, shape, out_channels, k, pad)() for s in systems}
    for s in systems:
        for a, b in zip(grads["fastbp"], grads[s], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=s)


def test_pool_rows_agree(cs):
    _, shape = cs.QUICK_POOL_LAYERS[0]
    systems = [s for s in cs.available(cs.LAYER_SYSTEMS) if s != "gemm-floor"]
    grads = {s: np.asarray(cs.make_pool_layer(s, shape)()) for s in systems}
    for s in systems:
        np.testing.assert_array_equal(grads[s], grads["fastbp"], err_msg=s)
    assert cs.make_pool_layer("gemm-floor", shape) is None


def test_gemm_floor_runs_the_step_products(cs):
    # 2 products for the first conv (its input needs no gradient), 3 for every other layer.
    step = cs.make_gemm_floor(2)
    step()
    assert len(step.products) == 2 + 3 * 3
    assert [a.shape for a, _ in step.products[:2]] == [(2 * 784, 9), (9, 2 * 784)]


def test_quick_run_prints_every_table(cs, capsys):
    results = cs.main(["--quick", "--no-pin", "--batches", "1", "--optimizers", "sgd"])
    out = capsys.readouterr().out
    assert set(results) == {"B1 step"} | {r[0] for r in cs.QUICK_CONV_LAYERS + cs.QUICK_POOL_LAYERS}
    assert "Relative to the GEMM floor." in out
    assert re.search(r"^\| B1 step \| (replay|compiled)", out, re.MULTILINE)
    for line in out.splitlines():
        assert line.count("|") <= 8  # seven columns at most: the docs' content column


# ---- time_cnn_epoch.py ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def epoch_script():
    return _load("time_cnn_epoch")


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    """64 training and 20 test images in MNIST's file format, a bright bar per class."""
    import fastbp.data

    directory = tmp_path_factory.mktemp("tiny-mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 20)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for c in range(10):
            images[labels == c, 2 * c + 4 : 2 * c + 6, 4:24] = 255
        fastbp.data.write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        fastbp.data.write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def test_epoch_runs_follow_the_examples_recipe(epoch_script, tiny_mnist, tmp_path):
    init = tmp_path / "init.npz"
    ours = epoch_script.run_system(
        "fastbp", data_dir=str(tiny_mnist), epochs=5, stop_after=2, init_out=str(init)
    )
    cosine = [0.05, 0.05 * (1 + np.cos(np.pi / 5)) / 2]  # the example's schedule over 5 epochs
    assert [e["lr"] for e in ours["epochs"]] == pytest.approx(cosine)
    assert len(ours["epochs"]) == 2 and 0.0 <= ours["final_accuracy"] <= 1.0
    assert ours["train_time"] > 0 and ours["peak_rss_mb"] > 10
    results = [ours, {"system": "torch", "skipped": "skipped (not installed)"}]
    if importlib.util.find_spec("torch") is not None:
        theirs = epoch_script.run_system(
            "torch", data_dir=str(tiny_mnist), epochs=5, stop_after=2, init_in=str(init)
        )
        # Same initial weights and batches: the first epoch's losses agree up to dropout.
        assert theirs["epochs"][0]["loss"] == pytest.approx(ours["epochs"][0]["loss"], rel=0.2)
        results[1] = theirs
    table = epoch_script.format_epochs(results)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3 and rows[1].startswith("| fastbp 0.")


def test_first_step_marks_every_stage_in_order(epoch_script, tiny_mnist):
    import time

    marks = epoch_script.first_step(str(tiny_mnist), time.time())
    assert list(marks) == ["python", "import", "data", "model", "step"]
    assert list(marks.values()) == sorted(marks.values())
    table = epoch_script.format_first_steps([marks, {"error": "worker exited with status 1"}])
    assert "| 1 |" in table and "status 1" in table
