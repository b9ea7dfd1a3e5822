"""The fused mean kernel DDP's shared-memory average uses, against its NumPy twin."""

import numpy as np
import pytest

from fastbp.kernels.reduce import mean_of_copies, mean_of_copies_numpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("bounds", [(0, 37), (5, 30), (12, 12), (36, 37)])
@pytest.mark.parametrize("alias", ["first", "last"])
def test_mean_of_copies_matches_twin(dtype, count, bounds, alias):
    rng = np.random.default_rng(count)
    copies = [(rng.standard_normal(37) * 10.0 ** rng.integers(-4, 5, 37)).astype(dtype)]
    copies += [rng.standard_normal(37).astype(dtype) for _ in range(count - 1)]
    copies[1][3] = np.inf  # an inf and a NaN pass through as in the sum
    copies[0][7] = np.nan
    lo, hi = bounds
    results = []
    for kernel in (mean_of_copies, mean_of_copies_numpy):
        # One copy is also `out` (a rank's own gradient, as DDP passes it); its mean
        # overwrites it, so the kernel must have read it for every element first.
        inputs = [c.copy() for c in copies]
        k = 0 if alias == "first" else count - 1
        out = inputs[k]
        shared = np.full(37, -1.0, dtype)
        kernel(tuple(inputs), lo, hi, 1.0 / count, out, shared)
        outside = np.r_[0:lo, hi:37]
        assert (shared[outside] == -1).all()  # only lo:hi written
        np.testing.assert_array_equal(out[outside], copies[k][outside])
        np.testing.assert_array_equal(out[lo:hi], shared[lo:hi])
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])  # same order of additions
    expected = sum(c.astype(np.float64) for c in copies) / count
    np.testing.assert_allclose(
        results[0][lo:hi], expected[lo:hi], rtol=1e-5 if dtype == np.float32 else 1e-12
    )


@pytest.mark.parametrize("kernel", [mean_of_copies, mean_of_copies_numpy])
def test_mean_of_copies_needs_two(kernel):
    a = np.zeros(3)
    with pytest.raises(ValueError, match="mean_of_copies: needs two or more copies, got 1"):
        kernel((a,), 0, 3, 1.0, a.copy(), a.copy())
