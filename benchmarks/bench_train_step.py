"""pytest-benchmark: one training step of an MLP, fastbp beside each peer.

Grouped by configuration, so ``pytest benchmarks/bench_train_step.py
--benchmark-group-by=group`` prints fastbp (eager and under ``fb.trace``), NumPy by
hand, PyTorch, JAX and the GEMM floor in one table per model. In CI it runs with
``--benchmark-disable`` (one call each), which still checks that every system runs,
that fastbp's loss matches the hand-written NumPy step and that the traced step's
loss equals the eager one (and that it ran compiled), and runs ``compare.py``.
"""

import numpy as np
import pytest
from mlp_systems import (
    CONFIGS,
    OPTIMIZERS,
    SYSTEMS,
    available_systems,
    make_fastbp,
    make_fastbp_trace,
    make_numpy,
)

from fastbp.jit import blas

SMALL = ["B1-784-128-10", "B16-784-128-10", "B128-784-512-256-10"]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("system", list(SYSTEMS))
def test_train_step(benchmark, config, system, optimizer):
    """Plain SGD (the compiled step's folded path), SGD momentum 0.9 (the example's) and Adam."""
    if system not in available_systems(optimizer):
        pytest.skip(f"{system} is not installed (optional peer), or has no {optimizer} row")
    batch, sizes = CONFIGS[config]
    step = SYSTEMS[system][0](batch, sizes, optimizer)
    benchmark.group = f"train-step {config} {optimizer}"
    benchmark.extra_info.update(batch=batch, sizes=sizes, optimizer=optimizer)
    benchmark(step)


@pytest.mark.parametrize("config", SMALL)
def test_fastbp_step_matches_numpy_by_hand(config):
    batch, sizes = CONFIGS[config]
    ours, reference = make_fastbp(batch, sizes), make_numpy(batch, sizes)
    for _ in range(3):
        np.testing.assert_allclose(float(ours()), float(reference()), rtol=1e-4)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("config", SMALL)
def test_fastbp_trace_step_equals_eager(config, optimizer):
    batch, sizes = CONFIGS[config]
    traced = make_fastbp_trace(batch, sizes, optimizer)
    eager = make_fastbp(batch, sizes, optimizer)
    assert float(traced()) == float(eager())
    for _ in range(2):
        # The compiled step folds plain SGD into the weight gradients' products, which round
        # the update differently: later losses agree to rounding.
        np.testing.assert_allclose(float(traced()), float(eager()), rtol=1e-6)
    if blas.AVAILABLE:  # the benchmark times the compiled step, not the replay
        assert traced.traced.compiled == (True, "")


def test_compare_script_prints_the_side_by_side_table(capsys):
    import compare

    config = "B1-784-128-10"
    argv = ["--threads", "all", "--configs", config, "--min-time", "0.01"]
    results = compare.main(argv + ["--optimizers", "sgd,sgd-momentum"])
    assert set(results[config]) == set(available_systems())
    assert set(results[f"{config} sgd-momentum"]) == set(available_systems("sgd-momentum"))
    assert all(seconds > 0 for seconds in results[config].values())
    table = capsys.readouterr().out
    assert f"| {config} sgd-momentum | compiled |" in table
    assert f"| {config} | " in table and "1.00x" in table  # the floor, against itself
