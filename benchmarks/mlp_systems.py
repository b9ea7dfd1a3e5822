"""One SGD training step of an MLP, written for each system we compare against.

Every ``make_*`` function returns a zero-argument ``step()`` that runs forward,
softmax cross-entropy, backward and an SGD update on fixed random data, so the
timings compare the same work. ``make_gemm_floor`` runs only the matrix products
(preallocated): no system can beat it, and every result is quoted as a ratio to it.

The configurations are those of issue 3: batch size and layer sizes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

CONFIGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "B1-784-128-10": (1, (784, 128, 10)),
    "B16-784-128-10": (16, (784, 128, 10)),
    "B128-784-512-256-10": (128, (784, 512, 256, 10)),
    "B1024-784-1024-1024-10": (1024, (784, 1024, 1024, 10)),
}
LR = 0.01


def has(module: str) -> bool:
    """True if ``module`` can be imported (optional peers)."""
    return importlib.util.find_spec(module) is not None


def problem(batch: int, sizes: tuple[int, ...], seed: int = 0):
    """Random inputs, labels and initial weights (in, out) shared by every system."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1 / np.sqrt(n_in)
        w = rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, n_out).astype(np.float32)
        weights.append((w, b))
    return x, y, weights


def _fastbp_mlp(weights):
    """The fastbp model and optimizer of ``make_fastbp`` and ``make_fastbp_trace``.

    Returns ``(model, opt, load)``; ``load()`` writes the initial ``weights`` into the
    parameters in place (as the optimizer updates them).
    """
    from fastbp import nn, optim

    linears = [nn.Linear(w.shape[0], w.shape[1]) for w, _ in weights]

    def load() -> None:
        for linear, (w, b) in zip(linears, weights, strict=True):
            linear.weight.data[...] = w
            linear.bias.data[...] = b

    load()
    layers = []
    for i, linear in enumerate(linears):
        layers.append(linear)
        if i < len(linears) - 1:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    opt = optim.SGD(model.parameters(), lr=LR)
    return model, opt, load


def make_fastbp(batch: int, sizes: tuple[int, ...]) -> Callable[[], float]:
    """fastbp: nn.Sequential of Linear/ReLU, F.cross_entropy, optim.SGD."""
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, weights = problem(batch, sizes)
    model, opt, _ = _fastbp_mlp(weights)
    xt = fb.from_numpy(x)

    def step() -> float:
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), y)
        loss.backward()
        opt.step()
        return loss

    return step


def make_fastbp_trace(batch: int, sizes: tuple[int, ...]) -> Callable[[], float]:
    """fastbp under ``fb.trace``: the step of ``make_fastbp`` (same model, loss and SGD),
    its tape recorded once (outside the timing) and, being made of ops that have compiled
    forms, compiled into one Numba function (``fastbp.jit.compiler``) that every later call
    runs; ``step.traced`` is the traced function.

    The recording call takes a real SGD step, so the initial weights are loaded again
    after it: every call of the returned ``step()`` then gives the eager step's loss, bit
    for bit.
    """
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, weights = problem(batch, sizes)
    model, opt, load = _fastbp_mlp(weights)
    xt = fb.from_numpy(x)

    @fb.trace
    def train_step(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    def step() -> float:
        return train_step(xt, y)

    step()  # record outside the timing
    load()
    step.traced = train_step
    return step


def make_numpy(batch: int, sizes: tuple[int, ...]) -> Callable[[], float]:
    """Backprop written out by hand in NumPy, as a textbook would (allocating freely)."""
    x, y, weights = problem(batch, sizes)
    params = [(w.copy(), b.copy()) for w, b in weights]
    rows = np.arange(batch)

    def step() -> float:
        acts = [x]
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        z = h - h.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, y]).mean()
        dz = p
        dz[rows, y] -= 1
        dz /= batch
        for i in range(len(params) - 1, -1, -1):
            w, b = params[i]
            a = acts[i]
            dw = a.T @ dz
            db = dz.sum(axis=0)
            if i > 0:
                dz = (dz @ w.T) * (a > 0)
            w -= LR * dw
            b -= LR * db
        return loss

    return step


def make_gemm_floor(batch: int, sizes: tuple[int, ...]) -> Callable[[], None]:
    """Only the matrix products of a step, into preallocated buffers: the floor."""
    x, _, weights = problem(batch, sizes)
    ws = [w for w, _ in weights]
    acts = [x] + [np.empty((batch, w.shape[1]), np.float32) for w in ws]
    grads = [np.empty_like(w) for w in ws]
    deltas = [np.ones((batch, w.shape[1]), np.float32) for w in ws]
    dins = [np.empty((batch, w.shape[0]), np.float32) for w in ws]

    def step() -> None:
        for i, w in enumerate(ws):
            np.dot(acts[i], w, out=acts[i + 1])
        for i in range(len(ws) - 1, -1, -1):
            np.dot(acts[i].T, deltas[i], out=grads[i])
            if i > 0:  # the data batch needs no gradient
                np.dot(deltas[i], ws[i].T, out=dins[i])

    return step


def make_torch(batch: int, sizes: tuple[int, ...]) -> Callable[[], float]:
    """PyTorch eager: nn.Sequential, F.cross_entropy, optim.SGD."""
    import torch

    x, y, weights = problem(batch, sizes)
    layers = []
    for i, (w, b) in enumerate(weights):
        linear = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def make_jax(batch: int, sizes: tuple[int, ...]) -> Callable[[], float]:
    """JAX: the whole step under jax.jit (compiled once, outside the timing)."""
    import jax
    import jax.numpy as jnp

    x, y, weights = problem(batch, sizes)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(ps, xb, yb):
        h = xb
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            if i < len(ps) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.take_along_axis(logp, yb[:, None], axis=1).mean()

    @jax.jit
    def update(ps, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(ps, xb, yb)
        return [(w - LR * gw, b - LR * gb) for (w, b), (gw, gb) in zip(ps, g, strict=True)], loss

    state = {"params": params}

    def step() -> float:
        state["params"], loss = update(state["params"], xj, yj)
        loss.block_until_ready()
        return loss

    step()  # compile outside the timing
    return step


SYSTEMS: dict[str, tuple[Callable, str | None]] = {
    "gemm-floor": (make_gemm_floor, None),
    "fastbp": (make_fastbp, None),
    "fastbp-trace": (make_fastbp_trace, None),
    "numpy": (make_numpy, None),
    "torch": (make_torch, "torch"),
    "jax": (make_jax, "jax"),
}


def available_systems() -> list[str]:
    """The systems whose optional dependencies are installed."""
    return [name for name, (_, dep) in SYSTEMS.items() if dep is None or has(dep)]
