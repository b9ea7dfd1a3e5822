"""benchmarks/eager_budget.py: its "kernels alone" step is the eager step's arithmetic.

The script's claim (what the eager MLP step costs without the engine) holds only if its
direct kernel calls compute what the eager step computes; here the weights of both after
a few steps must be equal, bit for bit. Nothing is timed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def budget():
    sys.path.insert(0, str(BENCH))  # the script imports mlp_systems beside it
    spec = importlib.util.spec_from_file_location(
        "fastbp_bench_eager_budget", BENCH / "eager_budget.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum"])
@pytest.mark.parametrize("batch", [1, 16])
def test_kernel_step_matches_the_eager_step_bitwise(budget, batch, optimizer):
    import fastbp as fb
    import fastbp.nn.functional as F

    ms = budget.ms
    x, y, weights = ms.problem(batch, budget.SIZES)
    model, opt, _ = ms._fastbp_mlp(weights, optimizer)
    kernel_step = budget.KernelStep(batch, optimizer)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(fb.from_numpy(x)), y).backward()
        opt.step()
        kernel_step(timed=True)
    eager = [p.data for p in model.parameters()]
    assert [e.shape for e in eager] == [p.shape for p in kernel_step.params]
    for e, k in zip(eager, kernel_step.params, strict=True):
        np.testing.assert_array_equal(e, k)
    assert not np.array_equal(kernel_step.params[0], weights[0][0])  # it did train
    assert set(kernel_step.pieces) >= {"sgd update", "linear+relu", "softmax-ce"}


def test_script_prints_both_tables(budget, capsys):
    budget.main(["--batches", "1", "--rounds", "2", "--per-round", "1"])
    out = capsys.readouterr().out
    assert "| B1 sgd |" in out and "kernels / floor" in out and "| sgd update |" in out
