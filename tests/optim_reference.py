"""Textbook SGD and Adam/AdamW written out in float64: the reference both the update
kernels (tests/test_kernels.py) and the optimizers (tests/test_optim.py) are checked
against; and the tolerance for an SGD update that a compiled step folded into a GEMM."""

import numpy as np


def reference_sgd(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch's SGD rule, one step per gradient in ``grads``."""
    w = w.astype(np.float64)
    buf = None
    for g in grads:
        d = g.astype(np.float64) + weight_decay * w
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        w = w - lr * d
    return w


def reference_adam(w, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """Adam (L2 added to the gradient) or AdamW (decoupled decay), with bias-corrected moments."""
    beta1, beta2 = betas
    w = w.astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def assert_within_rounding(actual, expected):
    """``actual`` differs from ``expected`` by rounding alone: a few units in the last place
    of the array's largest value (an update rounds relative to its largest term).

    A compiled step (fastbp.jit.compiler) folds a plain SGD update into the GEMM of the weight's
    gradient, ``w ← w − lr·xᵀ·dy``, which rounds differently from the eager update.
    """
    scale = np.finfo(expected.dtype).eps * np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 4 * scale
