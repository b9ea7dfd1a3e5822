"""The MNIST CNN's training step, one conv layer and max-pool, every system side by side.

The network is the one issue 15 sets targets for (the example's, without its dropout): conv
1→32 3×3 pad 1, ReLU, max-pool 2, conv 32→64 3×3 pad 1, ReLU, max-pool 2, Linear 3136→128,
ReLU, Linear 128→10, softmax cross-entropy, then plain SGD (lr 0.01) or SGD with momentum 0.9
(the example's update). Every system starts from the same weights and data:

* *fastbp*: the eager step (``nn.Sequential``, ``F.cross_entropy``, ``optim.SGD``);
* *fastbp-trace*: the same step under ``fb.trace`` (recorded outside the timing); the last
  table says which path it takes (compiled, or replayed and why);
* *NumPy by hand*: im2col with ``sliding_window_view``, the products through ``@`` (BLAS),
  col2im as nine shifted adds, max-pool through a reshape, as a textbook writes it;
* *PyTorch eager*, one thread; *JAX jit*, the whole step compiled once (skipped without JAX);
* *GEMM floor*: only the step's matrix products (im2col layout, preallocated, ``np.dot``),
  through the same BLAS as the NumPy rows.

The layer rows time one ``conv2d`` (or ``max_pool2d``) forward and the backward of its sum.
Usage::

    python benchmarks/cnn_systems.py                  # every row, pinned to CPU 0
    python benchmarks/cnn_systems.py --cpu 1 --min-time 2 --markdown cnn.md
    python benchmarks/cnn_systems.py --quick          # tiny sizes, a few seconds: a smoke test

The script re-executes itself pinned to one CPU with one BLAS/OpenMP/Numba thread (and
``torch.set_num_threads(1)``); the systems take turns (``compare.interleaved_medians``), so a
slow spell of a shared machine falls on all of them. Quote the ratios, not the times.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

# NumPy's BLAS reads its thread count at import; _pin re-executes the script with it set.
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blas_info  # noqa: E402  (the benchmarks directory is not a package)
import compare  # noqa: E402
import mlp_systems as ms  # noqa: E402

BATCHES = (1, 16, 64, 256)
QUICK_BATCHES = (1, 2)
OPTIMIZERS = ("sgd", "sgd-momentum")
# (name, input shape, out channels, kernel, padding): the two conv layers.
CONV_LAYERS = (
    ("conv2d (64,32,14,14) 64x3x3 pad 1", (64, 32, 14, 14), 64, 3, 1),
    ("conv2d (64,1,28,28) 32x5x5", (64, 1, 28, 28), 32, 5, 0),
)
POOL_LAYERS = (("max_pool2d 2x2 (64,32,28,28)", (64, 32, 28, 28)),)
QUICK_CONV_LAYERS = (
    ("conv2d (2,4,6,6) 5x3x3 pad 1", (2, 4, 6, 6), 5, 3, 1),
    ("conv2d (2,1,8,8) 3x5x5", (2, 1, 8, 8), 3, 5, 0),
)
QUICK_POOL_LAYERS = (("max_pool2d 2x2 (2,3,8,8)", (2, 3, 8, 8)),)
STEP_SYSTEMS = ("gemm-floor", "fastbp", "fastbp-trace", "numpy", "torch", "jax")
LAYER_SYSTEMS = ("gemm-floor", "fastbp", "numpy", "torch", "jax")
_PEERS = {"torch": "torch", "jax": "jax"}


def available(systems: tuple[str, ...] = STEP_SYSTEMS) -> list[str]:
    """The systems of ``systems`` whose optional dependency (torch, JAX) is installed.

    Parameters
    ----------
    systems : tuple of str, optional
        Names from :data:`STEP_SYSTEMS`.

    Returns
    -------
    list of str
    """
    return [s for s in systems if s not in _PEERS or ms.has(_PEERS[s])]


# ---------------------------------------------------------------------------------------------
# The problem every system solves
# ---------------------------------------------------------------------------------------------


def cnn_problem(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Images, labels and initial parameters shared by every system.

    Parameters
    ----------
    batch : int
        Images in the batch.
    seed : int, optional
        Seed of the generator. Default 0.

    Returns
    -------
    x : np.ndarray
        float32 ``(batch, 1, 28, 28)`` in [0, 1).
    y : np.ndarray
        int64 labels ``(batch,)``.
    params : list of np.ndarray
        conv1 weight (32, 1, 3, 3) and bias, conv2 weight (64, 32, 3, 3) and bias, fc1
        weight (3136, 128) and bias, fc2 weight (128, 10) and bias: PyTorch's default
        uniform ranges, the Linear weights stored (in, out) as fastbp's ``nn.Linear`` does.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    params = []
    for shape, fan_in in (
        ((32, 1, 3, 3), 9),
        ((64, 32, 3, 3), 288),
        ((3136, 128), 3136),
        ((128, 10), 128),
    ):
        bound = 1 / np.sqrt(fan_in)
        out = shape[0] if len(shape) == 4 else shape[1]
        params.append(rng.uniform(-bound, bound, shape).astype(np.float32))
        params.append(rng.uniform(-bound, bound, out).astype(np.float32))
    return x, y, params


# ---------------------------------------------------------------------------------------------
# fastbp
# ---------------------------------------------------------------------------------------------


def fastbp_model(params: list[np.ndarray], optimizer: str = "sgd"):
    """The fastbp network and optimizer, loaded with ``params``.

    Parameters
    ----------
    params : list of np.ndarray
        As :func:`cnn_problem` returns them.
    optimizer : {'sgd', 'sgd-momentum'}, optional
        The update rule (``mlp_systems.OPTIMIZERS``). Default 'sgd'.

    Returns
    -------
    model : fastbp.nn.Sequential
    opt : fastbp.optim.Optimizer
    load : callable
        ``load()`` writes ``params`` into the parameters again, in place.
    """
    from fastbp import nn

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip

    def load() -> None:
        for p, value in zip(model.parameters(), params, strict=True):
            p.data[...] = value

    load()
    return model, ms._fastbp_optimizer(model.parameters(), optimizer), load


def make_fastbp(batch: int, optimizer: str = "sgd") -> Callable[[], Any]:
    """The eager fastbp step; returns ``step()`` giving the loss tensor."""
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, params = cnn_problem(batch)
    model, opt, _ = fastbp_model(params, optimizer)
    xt = fb.from_numpy(x)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), y)
        loss.backward()
        opt.step()
        return loss

    step.model = model
    return step


def make_fastbp_trace(batch: int, optimizer: str = "sgd") -> Callable[[], Any]:
    """The step of :func:`make_fastbp` under ``fb.trace``, recorded before it is returned.

    The recording call takes a real step, so the weights and the optimizer's state are
    reset after it: the returned ``step()`` then follows the eager step call for call.
    ``step.traced`` is the traced function (``mlp_systems.fastbp_trace_path`` reads it).
    """
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, params = cnn_problem(batch)
    model, opt, load = fastbp_model(params, optimizer)
    xt = fb.from_numpy(x)

    @fb.trace
    def train_step(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    def step():
        return train_step(xt, y)

    fresh = opt.state_dict()
    step()  # record outside the timing
    load()
    opt.load_state_dict(fresh)
    step.traced = train_step
    step.model = model
    return step


# ---------------------------------------------------------------------------------------------
# NumPy by hand and the GEMM floor
# ---------------------------------------------------------------------------------------------


def im2col(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """``(N·OH·OW, C·k·k)`` columns of a stride-1 convolution of NCHW ``x`` (a copy).

    Parameters
    ----------
    x : np.ndarray
        ``(N, C, H, W)``.
    k : int
        Square kernel size.
    pad : int
        Zero padding on every side.

    Returns
    -------
    np.ndarray
    """
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)


def col2im(cols: np.ndarray, shape: tuple[int, ...], k: int, pad: int) -> np.ndarray:
    """The adjoint of :func:`im2col`: sum the columns' entries back into an NCHW array.

    Parameters
    ----------
    cols : np.ndarray
        ``(N·OH·OW, C·k·k)``.
    shape : tuple of int
        ``(N, C, H, W)`` of the input.
    k, pad : int
        As for :func:`im2col`.

    Returns
    -------
    np.ndarray
        ``shape``.
    """
    n, c, h, w = shape
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    blocks = cols.reshape(n, oh, ow, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    for i in range(k):  # one shifted add per kernel offset
        for j in range(k):
            out[:, :, i : i + oh, j : j + ow] += blocks[:, :, i, j]
    return out[:, :, pad : pad + h, pad : pad + w]


def _conv_forward(x, w, b, pad):
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    cols = im2col(x, k, pad)
    out = cols @ w.reshape(o, -1).T + b
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2), cols


def _conv_backward(dout, cols, x_shape, w, pad, need_dx=True):
    o, _, k, _ = w.shape
    dm = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (dm.T @ cols).reshape(w.shape)
    db = dm.sum(axis=0)
    dx = col2im(dm @ w.reshape(o, -1), x_shape, k, pad) if need_dx else None
    return dx, dw, db


def _pool_forward(x):
    n, c, h, w = x.shape
    xr = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = xr.max(axis=(3, 5))
    return out, xr == out[:, :, :, None, :, None]


def _pool_backward(dout, mask):
    # A tie routes the gradient to every maximum; after ReLU only all-zero windows tie, and
    # ReLU's backward zeroes those again.
    n, c, h2, w2 = dout.shape
    return (mask * dout[:, :, :, None, :, None]).reshape(n, c, 2 * h2, 2 * w2)


def make_numpy(batch: int, optimizer: str = "sgd") -> Callable[[], float]:
    """Forward, cross-entropy, backward and update written out in NumPy (allocating freely)."""
    x, y, params = cnn_problem(batch)
    params = [p.copy() for p in params]
    update = ms._numpy_update(optimizer)
    rows = np.arange(batch)

    def step() -> float:
        w1, b1, w2, b2, w3, b3, w4, b4 = params
        z1, cols1 = _conv_forward(x, w1, b1, 1)
        a1 = np.maximum(z1, 0)
        p1, m1 = _pool_forward(a1)
        z2, cols2 = _conv_forward(p1, w2, b2, 1)
        a2 = np.maximum(z2, 0)
        p2, m2 = _pool_forward(a2)
        f = p2.reshape(batch, -1)
        h = np.maximum(f @ w3 + b3, 0)
        logits = h @ w4 + b4
        z = logits - logits.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        loss = float(-np.log(prob[rows, y]).mean())
        d = prob
        d[rows, y] -= 1
        d /= batch
        grads = [None] * 8
        grads[6], grads[7] = h.T @ d, d.sum(axis=0)
        dh = (d @ w4.T) * (h > 0)
        grads[4], grads[5] = f.T @ dh, dh.sum(axis=0)
        dp2 = (dh @ w3.T).reshape(p2.shape)
        dz2 = _pool_backward(dp2, m2) * (z2 > 0)
        dp1, grads[2], grads[3] = _conv_backward(dz2, cols2, p1.shape, w2, 1)
        dz1 = _pool_backward(dp1, m1) * (z1 > 0)
        _, grads[0], grads[1] = _conv_backward(dz1, cols1, x.shape, w1, 1, need_dx=False)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            update(i, p, g)
        return loss

    step.params = params
    return step


def _floor(products: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[], None]:
    """``step()`` running ``np.dot(a, b, out=...)`` for each pair, into buffers made once."""
    outs = [np.empty((a.shape[0], b.shape[1]), np.float32) for a, b in products]

    def step() -> None:
        for (a, b), out in zip(products, outs, strict=True):
            np.dot(a, b, out=out)

    step.products = products
    return step


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


def _conv_products(n, c, h, w, o, k, pad, need_dx=True):
    """The (a, b) pairs of one conv layer's forward, weight-gradient and input-gradient GEMMs."""
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    rows, depth = n * oh * ow, c * k * k
    cols = _ones(rows, depth)
    wt = _ones(depth, o)
    dy = _ones(rows, o)
    pairs = [(cols, wt), (np.ascontiguousarray(cols.T), dy)]
    if need_dx:
        pairs.append((dy, np.ascontiguousarray(wt.T)))
    return pairs


def make_gemm_floor(batch: int, optimizer: str = "sgd") -> Callable[[], None]:
    """Only the products of a step (im2col layout): forward, weight and input gradients.

    The first layer's input needs no gradient, so it has two products; every other layer
    has three. Transposed operands are stored transposed, as a kernel that writes its
    columns in the order its product reads them would.
    """
    n = batch
    pairs = _conv_products(n, 1, 28, 28, 32, 3, 1, need_dx=False)
    pairs += _conv_products(n, 32, 14, 14, 64, 3, 1)
    for fan_in, fan_out in ((3136, 128), (128, 10)):
        pairs += [
            (_ones(n, fan_in), _ones(fan_in, fan_out)),
            (_ones(fan_in, n), _ones(n, fan_out)),
            (_ones(n, fan_out), _ones(fan_out, fan_in)),
        ]
    return _floor(pairs)


# ---------------------------------------------------------------------------------------------
# PyTorch and JAX
# ---------------------------------------------------------------------------------------------


def make_torch(batch: int, optimizer: str = "sgd") -> Callable[[], Any]:
    """PyTorch eager: the same ``nn.Sequential``, ``optim.SGD`` (weights copied in)."""
    import torch

    x, y, params = cnn_problem(batch)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip
    with torch.no_grad():
        for p, value in zip(net.parameters(), params, strict=True):
            # fastbp's Linear weight is (in, out), torch's (out, in).
            p.copy_(torch.from_numpy(np.ascontiguousarray(value.T if value.ndim == 2 else value)))
    opt = torch.optim.SGD(net.parameters(), **ms.OPTIMIZERS[optimizer])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
        return loss

    step.net = net
    return step


def _jax_net():
    import jax
    import jax.numpy as jnp

    def conv(x, w, b, pad):
        out = jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)])
        return out + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_fn(ps, xb, yb):
        w1, b1, w2, b2, w3, b3, w4, b4 = ps
        h = pool(jax.nn.relu(conv(xb, w1, b1, 1)))
        h = pool(jax.nn.relu(conv(h, w2, b2, 1)))
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ w3 + b3)
        logp = jax.nn.log_softmax(h @ w4 + b4)
        return -jnp.take_along_axis(logp, yb[:, None], axis=1).mean()

    return conv, pool, loss_fn


def make_jax(batch: int, optimizer: str = "sgd") -> Callable[[], Any]:
    """JAX: forward, gradient and the SGD (or momentum) update under one ``jax.jit``."""
    import jax
    import jax.numpy as jnp

    x, y, params = cnn_problem(batch)
    hyper = ms.OPTIMIZERS[optimizer]
    lr, mu = hyper["lr"], hyper.get("momentum", 0.0)
    loss_fn = _jax_net()[2]

    @jax.jit
    def update(ps, bufs, first, xb, yb):
        loss, gs = jax.value_and_grad(loss_fn)(ps, xb, yb)
        # PyTorch's momentum: the first buffer is the gradient itself.
        bufs = [jnp.where(first, g, mu * v + g) for v, g in zip(bufs, gs, strict=True)]
        steps = bufs if mu else gs
        return [p - lr * s for p, s in zip(ps, steps, strict=True)], bufs, loss

    state = {
        "params": [jnp.asarray(p) for p in params],
        "bufs": [jnp.zeros_like(p) for p in params],
        "first": True,
    }
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def step():
        state["params"], state["bufs"], loss = update(
            state["params"], state["bufs"], state["first"], xj, yj
        )
        state["first"] = False
        loss.block_until_ready()
        return loss

    step.state = state
    return step


STEPS: dict[str, Callable[..., Callable[[], Any]]] = {
    "gemm-floor": make_gemm_floor,
    "fastbp": make_fastbp,
    "fastbp-trace": make_fastbp_trace,
    "numpy": make_numpy,
    "torch": make_torch,
    "jax": make_jax,
}


# ---------------------------------------------------------------------------------------------
# Single layers: conv2d and max_pool2d, forward and the backward of the output's sum
# ---------------------------------------------------------------------------------------------


def layer_inputs(shape: tuple[int, ...], out_channels: int, k: int, seed: int = 1):
    """Input, weight and bias of a conv row (the same for every system)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((out_channels, shape[1], k, k)) * 0.05).astype(np.float32)
    return x, w, rng.standard_normal(out_channels).astype(np.float32)


def make_conv_layer(system: str, shape, out_channels: int, k: int, pad: int) -> Callable:
    """``run()`` computing ``conv2d(x, w, b, padding=pad)`` and the gradients of its sum.

    Parameters
    ----------
    system : str
        One of :data:`LAYER_SYSTEMS`.
    shape : tuple of int
        The input's ``(N, C, H, W)``.
    out_channels, k, pad : int
        Filters, square kernel size, padding.

    Returns
    -------
    callable
        ``run()`` returns ``(dx, dw, db)`` (None for the GEMM floor).
    """
    x, w, b = layer_inputs(shape, out_channels, k)
    n, c, h, wd = shape
    if system == "gemm-floor":
        return _floor(_conv_products(n, c, h, wd, out_channels, k, pad))
    if system == "fastbp":
        import fastbp as fb
        import fastbp.nn.functional as F

        ts = [fb.tensor(a, requires_grad=True) for a in (x, w, b)]

        def run():
            for t in ts:
                t.grad = None
            F.conv2d(*ts, padding=pad).sum().backward()
            return tuple(t.grad for t in ts)

        return run
    if system == "numpy":

        def run():
            out, cols = _conv_forward(x, w, b, pad)
            return _conv_backward(np.ones_like(out), cols, x.shape, w, pad)

        return run
    if system == "torch":
        import torch

        ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]

        def run():
            for t in ts:
                t.grad = None
            torch.nn.functional.conv2d(*ts, padding=pad).sum().backward()
            return tuple(t.grad.numpy() for t in ts)

        return run
    if system == "jax":
        import jax

        conv = _jax_net()[0]
        grad = jax.jit(jax.grad(lambda *a: conv(*a, pad).sum(), argnums=(0, 1, 2)))
        args = [jax.numpy.asarray(a) for a in (x, w, b)]

        def run():
            out = grad(*args)
            out[0].block_until_ready()
            return tuple(np.asarray(g) for g in out)

        return run
    raise ValueError(f"unknown system {system!r}")


def make_pool_layer(system: str, shape) -> Callable | None:
    """``run()`` computing ``max_pool2d(x, 2)`` and the gradient of its sum (None: no row).

    fastbp's and PyTorch's rows are those of ``bench_cnn.py``; there is no GEMM floor.
    """
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    if system == "gemm-floor":
        return None
    if system in ("fastbp", "torch"):
        import bench_cnn

        return (bench_cnn._pool_fastbp if system == "fastbp" else bench_cnn._pool_torch)(x)
    if system == "numpy":

        def run():
            out, mask = _pool_forward(x)
            return _pool_backward(np.ones_like(out), mask)

        return run
    if system == "jax":
        import jax

        pool = _jax_net()[1]
        grad = jax.jit(jax.grad(lambda a: pool(a).sum()))
        xj = jax.numpy.asarray(x)

        def run():
            return np.asarray(grad(xj).block_until_ready())

        return run
    raise ValueError(f"unknown system {system!r}")


# ---------------------------------------------------------------------------------------------
# Measuring and reporting
# ---------------------------------------------------------------------------------------------


def _pin(cpu: int, argv: list[str]) -> None:
    """Re-exec on CPU ``cpu`` with one thread per pool, before NumPy's BLAS starts threads."""
    if os.environ.get("FASTBP_BENCH_PINNED") == "1":
        return
    env = dict(os.environ, FASTBP_BENCH_PINNED="1", **{v: "1" for v in compare.THREAD_VARS})
    os.sched_setaffinity(0, {cpu})
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def measure(
    batches=BATCHES,
    optimizers=OPTIMIZERS,
    conv_layers=CONV_LAYERS,
    pool_layers=POOL_LAYERS,
    min_time: float = 1.0,
    rounds: int = 10,
    log=None,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Median time of every row and system, the systems taking turns within each row.

    Parameters
    ----------
    batches : sequence of int
        Batch sizes of the training-step rows.
    optimizers : sequence of str
        Names from ``mlp_systems.OPTIMIZERS`` ('sgd', 'sgd-momentum').
    conv_layers, pool_layers : sequence of tuple
        Layer rows, as :data:`CONV_LAYERS` and :data:`POOL_LAYERS`.
    min_time : float, optional
        Seconds per system and row. Default 1.
    rounds : int, optional
        Turns per row (``compare.interleaved_medians``). Default 10.
    log : file or None, optional
        Where to print each median as it is measured.

    Returns
    -------
    results : dict
        ``{row: {system: seconds}}``.
    paths : dict
        ``{row: path}``: what fastbp-trace does in each step row.
    """
    results: dict[str, dict[str, float]] = {}
    paths: dict[str, str] = {}
    for batch in batches:
        for optimizer in optimizers:
            row = f"B{batch} step" + ("" if optimizer == "sgd" else f" {optimizer}")
            steps = {s: STEPS[s](batch, optimizer) for s in available(STEP_SYSTEMS)}
            if "fastbp-trace" in steps:
                paths[row] = ms.fastbp_trace_path(steps["fastbp-trace"])
            results[row] = compare.interleaved_medians(steps, min_time, rounds)
            _log(log, row, results[row])
    for name, shape, out_channels, k, pad in conv_layers:
        runs = {
            s: make_conv_layer(s, shape, out_channels, k, pad) for s in available(LAYER_SYSTEMS)
        }
        results[name] = compare.interleaved_medians(runs, min_time, rounds)
        _log(log, name, results[name])
    for name, shape in pool_layers:
        runs = {s: make_pool_layer(s, shape) for s in available(LAYER_SYSTEMS)}
        runs = {s: r for s, r in runs.items() if r is not None}
        results[name] = compare.interleaved_medians(runs, min_time, rounds)
        _log(log, name, results[name])
    return results, paths


def _log(log, row: str, medians: dict[str, float]) -> None:
    if log is not None:
        for system, seconds in medians.items():
            print(f"{row:>40} {system:>12}: {seconds * 1e6:10.1f} us", file=log, flush=True)


def _ratio_table(results, systems, base: str, title: str) -> list[str]:
    others = [s for s in systems if s != base]
    lines = [title, "", "| row | " + " | ".join(compare.label(s) for s in others) + " |"]
    lines.append("| --- |" + " ---: |" * len(others))
    for row, medians in results.items():
        if base not in medians:
            continue
        cells = [f"{medians[s] / medians[base]:.2f}x" if s in medians else "–" for s in others]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict, paths: dict, systems=STEP_SYSTEMS) -> str:
    """Step/layer times, ratios to PyTorch, ratios to the GEMM floor, and fastbp-trace's path.

    Parameters
    ----------
    results, paths : dict
        As :func:`measure` returns them.
    systems : sequence of str, optional
        Columns, in order (a system a row lacks shows a dash).

    Returns
    -------
    str
        Four Markdown tables, at most seven columns each.
    """
    systems = [s for s in systems if any(s in r for r in results.values())]
    lines = ["Medians, 1 pinned core, float32.", ""]
    lines.append("| row | " + " | ".join(compare.label(s) for s in systems) + " |")
    lines.append("| --- |" + " ---: |" * len(systems))
    for row, medians in results.items():
        cells = [compare._time(medians[s]) if s in medians else "–" for s in systems]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if "torch" in systems:
        lines += ["", *_ratio_table(results, systems, "torch", "Relative to PyTorch eager "
                                    "(below 1 is faster).")]  # fmt: skip
    lines += ["", *_ratio_table(results, systems, "gemm-floor", "Relative to the GEMM floor.")]
    if paths:
        lines += ["", "The path fastbp-trace takes:", "", "| row | path |", "| --- | --- |"]
        lines += [f"| {row} | {path} |" for row, path in paths.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Measure and print the tables; see the module docstring.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    dict
        ``{row: {system: seconds}}``.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin to [0]")
    parser.add_argument("--no-pin", action="store_true", help="run where started (tests)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per system and row")
    parser.add_argument("--batches", default=None, help="comma-separated [1,16,64,256]")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="sgd,sgd-momentum")
    parser.add_argument("--no-layers", action="store_true", help="training-step rows only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, once: a smoke test")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args(argv)
    if not args.no_pin:
        _pin(args.cpu, argv)
    if ms.has("torch"):
        import torch

        torch.set_num_threads(1)
    quick = args.quick
    default_batches = QUICK_BATCHES if quick else BATCHES
    batches = [int(b) for b in args.batches.split(",")] if args.batches else default_batches
    conv_layers = () if args.no_layers else QUICK_CONV_LAYERS if quick else CONV_LAYERS
    pool_layers = () if args.no_layers else QUICK_POOL_LAYERS if quick else POOL_LAYERS
    results, paths = measure(
        batches,
        args.optimizers.split(","),
        conv_layers,
        pool_layers,
        min_time=0.0 if quick else args.min_time,
        rounds=1 if quick else 10,
        log=sys.stderr,
    )
    table = markdown(results, paths)
    print(blas_info.blas_line() + "\n\n" + table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return results


if __name__ == "__main__":
    main()
