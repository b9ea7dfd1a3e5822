"""The fused mean kernel DDP's shared-memory average uses, against its NumPy twin."""

import numpy as np
import pytest

from fastbp.kernels.reduce import mean_of_copies, mean_of_copies_numpy

# Which copies the outputs are, as DDP's shared-memory average passes them: `out` a rank's
# own gradient, `shared` (with two ranks) the region holding the other rank's values.
ALIASES = {
    "none": (None, None),
    "out first": (0, None),
    "out last": (-1, None),
    "shared first": (None, 0),
    "both": (0, -1),
    "both, swapped": (-1, 0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0, 37), (5, 30), (12, 12), (36, 37)])
@pytest.mark.parametrize(
    ("count", "alias"),  # with more than two copies shared may not be one (tested below)
    [(n, a) for n in (2, 3, 4) for a in ALIASES if n == 2 or ALIASES[a][1] is None],
)
def test_mean_of_copies_matches_twin(dtype, count, bounds, alias):
    out_at, shared_at = ALIASES[alias]
    rng = np.random.default_rng(count)
    copies = [(rng.standard_normal(37) * 10.0 ** rng.integers(-4, 5, 37)).astype(dtype)]
    copies += [rng.standard_normal(37).astype(dtype) for _ in range(count - 1)]
    copies[1][3] = np.inf  # an inf and a NaN pass through as in the sum
    copies[0][7] = np.nan
    lo, hi = bounds
    outside = np.r_[0:lo, hi:37]
    results = []
    for kernel in (mean_of_copies, mean_of_copies_numpy):
        # An output that is also a copy is overwritten by the mean: the kernel must have
        # read it for the element first.
        inputs = [c.copy() for c in copies]
        out = inputs[out_at] if out_at is not None else np.full(37, -1.0, dtype)
        shared = inputs[shared_at] if shared_at is not None else np.full(37, -1.0, dtype)
        kernel(tuple(inputs), lo, hi, 1.0 / count, out, shared)
        for array, at in ((out, out_at), (shared, shared_at)):  # only lo:hi written
            before = copies[at] if at is not None else np.full(37, -1.0, dtype)
            np.testing.assert_array_equal(array[outside], before[outside])
        np.testing.assert_array_equal(out[lo:hi], shared[lo:hi])
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])  # same order of additions
    expected = sum(c.astype(np.float64) for c in copies) / count
    np.testing.assert_allclose(
        results[0][lo:hi], expected[lo:hi], rtol=1e-5 if dtype == np.float32 else 1e-12
    )


@pytest.mark.parametrize("kernel", [mean_of_copies, mean_of_copies_numpy])
def test_mean_of_many_refuses_shared_among_the_copies(kernel):
    copies = tuple(np.ones(4) for _ in range(3))
    with pytest.raises(ValueError, match="shared holds the running sum"):
        kernel(copies, 0, 4, 1 / 3, np.zeros(4), copies[1])


@pytest.mark.parametrize("kernel", [mean_of_copies, mean_of_copies_numpy])
def test_mean_of_copies_needs_two(kernel):
    a = np.zeros(3)
    with pytest.raises(ValueError, match="mean_of_copies: needs two or more copies, got 1"):
        kernel((a,), 0, 3, 1.0, a.copy(), a.copy())
