"""fastbp.kernels against the NumPy expressions they replace (their ``*_numpy`` twins).

Each kernel and its twin share a pytest-benchmark group ``{kernel}-{rows}x{cols}``, so one table
(or ``--benchmark-compare``) shows them side by side. Shapes are (rows, cols) of the activation
matrices; dense layers use ``x (rows, cols) · w (cols, cols)``, optimizers a flat buffer of
``rows * cols`` parameters. float32 throughout. Kernels are called once before timing, so compile
time is not measured. Pin to one core for stable numbers::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 0 \\
        python -m pytest benchmarks/bench_kernels.py --benchmark-columns=median,iqr,rounds \\
        --benchmark-sort=name

With ``--benchmark-disable`` (as CI runs them) every case runs once, as a smoke test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fastbp.kernels import KERNELS

SHAPES = [(1, 128), (16, 128), (128, 512), (1024, 1024)]
DTYPE = np.float32


def _activation_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    return (
        rng.standard_normal((rows, cols)).astype(DTYPE),
        rng.standard_normal((rows, cols)).astype(DTYPE),
    )


def _sigmoid_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    return rng.uniform(0.0, 1.0, (rows, cols)).astype(DTYPE), _activation_inputs(rng, rows, cols)[1]


def _dense_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    x = rng.standard_normal((rows, cols)).astype(DTYPE)
    w = (rng.standard_normal((cols, cols)) / np.sqrt(cols)).astype(DTYPE)
    dy = rng.standard_normal((rows, cols)).astype(DTYPE)
    return x, w, dy


def _linear_forward_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    x, w, _ = _dense_inputs(rng, rows, cols)
    return x, w, rng.standard_normal(cols).astype(DTYPE)


def _cross_entropy_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    logits = (3.0 * rng.standard_normal((rows, cols))).astype(DTYPE)
    return logits, rng.integers(0, cols, size=rows)


def _gelu_backward_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    x, dy = _activation_inputs(rng, rows, cols)
    return x, rng.uniform(0.0, 1.0, (rows, cols)).astype(DTYPE), dy


def _scale_rows_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    return rng.standard_normal((rows, cols)).astype(DTYPE), np.full(rows, 1.0 / rows, DTYPE)


def _sgd_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    param, grad, buf = (rng.standard_normal(rows * cols).astype(DTYPE) for _ in range(3))
    # lr, momentum, dampening, weight_decay, nesterov, first_step
    return param, grad, buf, 1e-3, 0.9, 0.0, 1e-4, True, False


def _adam_inputs(rng: np.random.Generator, rows: int, cols: int) -> tuple[Any, ...]:
    param, grad, exp_avg = (rng.standard_normal(rows * cols).astype(DTYPE) for _ in range(3))
    exp_avg_sq = rng.uniform(0.0, 1.0, rows * cols).astype(DTYPE)
    # lr, beta1, beta2, eps, weight_decay, step, decoupled
    return param, grad, exp_avg, exp_avg_sq, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 10, True


INPUTS: dict[str, Callable[[np.random.Generator, int, int], tuple[Any, ...]]] = {
    "linear_forward": _linear_forward_inputs,
    "linear_backward": _dense_inputs,
    "matmul_grad": _dense_inputs,
    "bias_grad": lambda rng, rows, cols: _activation_inputs(rng, rows, cols)[1:],
    "sigmoid_backward": _sigmoid_inputs,
    "relu_backward": _activation_inputs,
    "relu_backward_bias": _activation_inputs,
    "sigmoid_backward_bias": _sigmoid_inputs,
    "softmax_cross_entropy": _cross_entropy_inputs,
    "softmax_cross_entropy_total": _cross_entropy_inputs,
    "scale_rows": _scale_rows_inputs,
    "sgd_update": _sgd_inputs,
    "adam_update": _adam_inputs,
    "gelu_forward": lambda rng, rows, cols: _activation_inputs(rng, rows, cols)[:1],
    "gelu_backward": _gelu_backward_inputs,
}


def test_every_kernel_is_benchmarked() -> None:
    assert set(INPUTS) == set(KERNELS)


@pytest.mark.parametrize("implementation", ["fastbp", "numpy"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{shape[0]}x{shape[1]}")
@pytest.mark.parametrize("kernel", list(INPUTS))
def test_kernel_speed(
    benchmark: Any, kernel: str, shape: tuple[int, int], implementation: str
) -> None:
    """Time one kernel (or its NumPy twin) at one shape, grouped with its counterpart."""
    rows, cols = shape
    benchmark.group = f"{kernel}-{rows}x{cols}"
    function = KERNELS[kernel][0 if implementation == "fastbp" else 1]
    arguments = INPUTS[kernel](np.random.default_rng(0), rows, cols)
    function(*arguments)  # compile (or load from cache) outside the timing
    benchmark(function, *arguments)


@pytest.mark.parametrize("call", ["dot", "matmul"])
@pytest.mark.parametrize(
    "shape",
    [(16, 784, 128), (128, 784, 512), (128, 256, 10), (256, 784, 512), (1024, 784, 1024)],
    ids=lambda shape: "x".join(map(str, shape)),
)
def test_weight_gradient_product(benchmark: Any, shape: tuple[int, int, int], call: str) -> None:
    """``xᵀ·dy`` (batch, in, out) through np.dot or np.matmul: linear_backward picks per shape."""
    batch, fan_in, fan_out = shape
    benchmark.group = f"weight-gradient-{batch}x{fan_in}x{fan_out}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, fan_in)).astype(DTYPE)
    dy = rng.standard_normal((batch, fan_out)).astype(DTYPE)
    out = np.empty((fan_in, fan_out), DTYPE)
    benchmark(getattr(np, call), x.T, dy, out=out)
