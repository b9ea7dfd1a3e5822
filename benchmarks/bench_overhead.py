"""pytest-benchmark: per-op overhead and JIT cost.

* A chain of 300 tiny elementwise ops, forward and backward: what the engine costs
  per op when the arrays are too small for the math to matter; eager, replayed by
  ``fb.trace`` (recorded once, outside the timing), by hand in NumPy, and in PyTorch.
* ``import fastbp`` in a fresh interpreter, and the first training step with a warm
  Numba cache (both in subprocesses, so the numbers include everything a user waits for).
"""

import subprocess
import sys

import numpy as np
import pytest

import fastbp as fb

CHAIN = 300


def tiny_chain(x):
    y = x
    for _ in range(CHAIN // 3):
        y = y * 1.001
        y = y + 0.5
        y = fb.tanh(y)
    return y.sum()


def numpy_chain(x):
    outs = []
    y = x
    for _ in range(CHAIN // 3):
        y = np.tanh(y * np.float32(1.001) + np.float32(0.5))
        outs.append(y)
    g = np.ones_like(x)
    for o in reversed(outs):
        g = g * (1 - o * o) * np.float32(1.001)
    return g


@pytest.mark.benchmark(group="per-op overhead (300 tiny ops, fwd+bwd)")
def test_tiny_op_chain_fastbp(benchmark):
    x = fb.tensor(np.ones(4, np.float32), requires_grad=True)

    def run():
        tiny_chain(x).backward()

    benchmark(run)
    assert x.grad is not None and np.isfinite(x.grad).all()


@pytest.mark.benchmark(group="per-op overhead (300 tiny ops, fwd+bwd)")
def test_tiny_op_chain_fastbp_trace(benchmark):
    x = fb.tensor(np.ones(4, np.float32), requires_grad=True)

    @fb.trace
    def run(leaf):
        tiny_chain(leaf).backward()

    run(x)  # records the tape
    expected = x.grad.copy()  # the recording call ran eagerly
    x.grad = None
    run(x)  # replays it
    np.testing.assert_array_equal(x.grad, expected)
    benchmark(run, x)
    assert x.grad is not None and np.isfinite(x.grad).all()


@pytest.mark.benchmark(group="per-op overhead (300 tiny ops, fwd+bwd)")
def test_tiny_op_chain_numpy_by_hand(benchmark):
    x = np.ones(4, np.float32)
    benchmark(numpy_chain, x)


@pytest.mark.benchmark(group="per-op overhead (300 tiny ops, fwd+bwd)")
def test_tiny_op_chain_torch(benchmark):
    torch = pytest.importorskip("torch")
    x = torch.ones(4, requires_grad=True)

    def run():
        y = x
        for _ in range(CHAIN // 3):
            y = torch.tanh(y * 1.001 + 0.5)
        y.sum().backward()

    benchmark(run)


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.benchmark(group="jit cost")
def test_import_time(benchmark):
    benchmark.pedantic(_python, args=("import fastbp",), rounds=3, iterations=1)


FIRST_STEP = """
import time, sys
sys.path.insert(0, {path!r})
t0 = time.perf_counter()
from mlp_systems import make_fastbp
step = make_fastbp(16, (784, 128, 10))
step()
print(time.perf_counter() - t0)
"""


@pytest.mark.benchmark(group="jit cost")
def test_first_step_with_warm_cache(benchmark, request):
    import os

    code = FIRST_STEP.format(path=os.path.dirname(__file__))
    _python(code)  # warms the Numba cache
    benchmark.pedantic(_python, args=(code,), rounds=3, iterations=1)


FIRST_COMPILED_STEP = """
import time, sys
sys.path.insert(0, {path!r})
t0 = time.perf_counter()
from mlp_systems import make_fastbp_trace
step = make_fastbp_trace(16, (784, 128, 10))  # records
step()  # compiles the recorded step, then runs it
print(time.perf_counter() - t0)
"""


@pytest.mark.benchmark(group="jit cost")
def test_first_compiled_step(benchmark):
    """Import, record and compile a traced step (the generated function has no disk cache)."""
    import os

    code = FIRST_COMPILED_STEP.format(path=os.path.dirname(__file__))
    _python(code)  # warms the Numba cache of the kernels it calls
    benchmark.pedantic(_python, args=(code,), rounds=3, iterations=1)
