"""The worked examples every backprop course starts with, as tests."""

import math

import numpy as np
import pytest

import fastbp as fb


def scalars(*values):
    return [fb.tensor(v, requires_grad=True, dtype=np.float64) for v in values]


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_circuit_x_plus_y_times_z():
    x, y, z = scalars(-2.0, 5.0, -4.0)
    f = (x + y) * z
    f.backward()
    assert f.item() == -12.0
    assert (x.grad, y.grad, z.grad) == (-4.0, -4.0, 3.0)


def test_staged_computation_matches_hand_derivation():
    # f = (x + σ(y)) / (σ(x) + (x + y)²) at x=3, y=-4, differentiated by hand stage by stage.
    x, y = scalars(3.0, -4.0)
    f = (x + fb.sigmoid(y)) / (fb.sigmoid(x) + (x + y) ** 2)
    f.backward()

    xv, yv = 3.0, -4.0
    sigy, sigx = sig(yv), sig(xv)
    num = xv + sigy
    den = sigx + (xv + yv) ** 2
    invden = 1 / den
    dnum = invden
    dinvden = num
    dden = -1 / den**2 * dinvden
    dx = dnum + (1 - sigx) * sigx * dden + 2 * (xv + yv) * dden
    dy = (1 - sigy) * sigy * dnum + 2 * (xv + yv) * dden
    assert f.item() == pytest.approx(num * invden)
    assert x.grad == pytest.approx(dx)
    assert y.grad == pytest.approx(dy)


def test_two_input_sigmoid_neuron():
    w0, x0, w1, x1, w2 = scalars(2.0, -1.0, -3.0, -2.0, -3.0)
    f = fb.sigmoid(w0 * x0 + w1 * x1 + w2)
    f.backward()
    dot = 2 * -1 + -3 * -2 + -3
    s = sig(dot)
    local = s * (1 - s)  # the sigmoid gate's shortcut
    assert f.item() == pytest.approx(s)
    assert [w0.grad, x0.grad, w1.grad, x1.grad, w2.grad] == pytest.approx(
        [-1 * local, 2 * local, -2 * local, -3 * local, local]
    )
    assert local == pytest.approx(0.196611933241)


def test_variable_used_twice_sums_gradients():
    (x,) = scalars(3.0)
    (x * x + x).backward()
    assert x.grad == 2 * 3.0 + 1


def test_gates_add_distributes_mul_swaps_max_routes():
    a, b = scalars(2.0, 5.0)
    (a + b).backward()
    assert (a.grad, b.grad) == (1.0, 1.0)
    a, b = scalars(2.0, 5.0)
    (a * b).backward()
    assert (a.grad, b.grad) == (5.0, 2.0)
    a, b = scalars(2.0, 5.0)
    fb.maximum(a, b).backward()
    assert (a.grad, b.grad) == (0.0, 1.0)


def test_affine_layer_gradients_follow_the_shapes():
    rng = np.random.default_rng(0)
    X = fb.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    W = fb.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = fb.tensor(rng.standard_normal(2), requires_grad=True)
    dY = rng.standard_normal((4, 2))
    (X @ W + b).backward(dY)
    np.testing.assert_allclose(X.grad, dY @ W.data.T)
    np.testing.assert_allclose(W.grad, X.data.T @ dY)
    np.testing.assert_allclose(b.grad, dY.sum(0))


def test_relu_backward_is_dy_times_mask():
    x = fb.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    fb.relu(x).backward(np.array([5.0, 5.0, 5.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 5.0])
