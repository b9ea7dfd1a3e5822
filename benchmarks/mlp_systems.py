"""One training step of an MLP, written for each system we compare against.

Every ``make_*`` function returns a zero-argument ``step()`` that runs forward,
softmax cross-entropy, backward and an optimizer update on fixed random data, so the
timings compare the same work. The optimizer is one of :data:`OPTIMIZERS`: plain SGD
(the configuration fastbp's compiled step folds into the weight-gradient GEMM), SGD with
momentum 0.9 (what the MNIST example uses) and Adam. ``make_gemm_floor`` runs only the
matrix products (preallocated, through ``np.dot``), and every result is quoted as a ratio
to it. It is a floor for code that calls BLAS through NumPy; a step that calls BLAS
directly and fuses the other passes around the products (fastbp's compiled step) can come
in just under it.

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
# name -> the hyperparameters, PyTorch's names; every system runs the same update rule.
OPTIMIZERS: dict[str, dict[str, float]] = {
    "sgd": {"lr": LR},
    "sgd-momentum": {"lr": LR, "momentum": 0.9},
    "adam": {"lr": 1e-3},
}


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


def _fastbp_optimizer(params, optimizer: str):
    from fastbp import optim

    hyper = OPTIMIZERS[optimizer]
    return optim.Adam(params, **hyper) if optimizer == "adam" else optim.SGD(params, **hyper)


def _numpy_update(optimizer: str):
    """``update(i, w, g)``: the optimizer's rule in NumPy, PyTorch's formulas, per array ``i``."""
    hyper, state = OPTIMIZERS[optimizer], {}
    lr = hyper["lr"]

    def sgd(i, w, g):
        w -= lr * g

    def momentum(i, w, g):
        buf = state.get(i)
        if buf is None:
            buf = state[i] = g.copy()
        else:
            buf *= hyper["momentum"]
            buf += g
        w -= lr * buf

    def adam(i, w, g, b1=0.9, b2=0.999, eps=1e-8):
        m, v, t = state.get(i, (np.zeros_like(w), np.zeros_like(w), 0))
        t += 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[i] = (m, v, t)
        w -= (lr / (1 - b1**t)) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)

    return {"sgd": sgd, "sgd-momentum": momentum, "adam": adam}[optimizer]


def _fastbp_mlp(weights, optimizer: str = "sgd"):
    """The fastbp model and optimizer of ``make_fastbp`` and ``make_fastbp_trace``.

    Returns ``(model, opt, load)``; ``load()`` writes the initial ``weights`` into the
    parameters in place (as the optimizer updates them).
    """
    from fastbp import nn

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
    opt = _fastbp_optimizer(model.parameters(), optimizer)
    return model, opt, load


def make_fastbp(batch: int, sizes: tuple[int, ...], optimizer: str = "sgd") -> Callable[[], float]:
    """fastbp: nn.Sequential of Linear/ReLU, F.cross_entropy, optim.SGD or optim.Adam."""
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, weights = problem(batch, sizes)
    model, opt, _ = _fastbp_mlp(weights, optimizer)
    xt = fb.from_numpy(x)

    def step() -> float:
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), y)
        loss.backward()
        opt.step()
        return loss

    return step


def make_fastbp_trace(
    batch: int, sizes: tuple[int, ...], optimizer: str = "sgd"
) -> Callable[[], float]:
    """fastbp under ``fb.trace``: the step of ``make_fastbp`` (same model, loss and SGD),
    its tape recorded once (outside the timing) and, being made of ops that have compiled
    forms, compiled into one Numba function (``fastbp.jit.compiler``) that every later call
    runs; ``step.traced`` is the traced function.

    The recording call takes a real step, so the initial weights and the optimizer's
    state are loaded again after it: every call of the returned ``step()`` then gives the
    eager step's loss.
    """
    import fastbp as fb
    import fastbp.nn.functional as F

    x, y, weights = problem(batch, sizes)
    model, opt, load = _fastbp_mlp(weights, optimizer)
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

    fresh = opt.state_dict()  # no momentum or Adam moments yet
    step()  # record outside the timing
    load()
    opt.load_state_dict(fresh)
    step.traced = train_step
    return step


def make_numpy(batch: int, sizes: tuple[int, ...], optimizer: str = "sgd") -> Callable[[], float]:
    """Backprop written out by hand in NumPy, as a textbook would (allocating freely)."""
    x, y, weights = problem(batch, sizes)
    update = _numpy_update(optimizer)
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
            update(2 * i, w, dw)
            update(2 * i + 1, b, db)
        return loss

    return step


def make_gemm_floor(
    batch: int, sizes: tuple[int, ...], optimizer: str = "sgd"
) -> Callable[[], None]:
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


def make_torch(batch: int, sizes: tuple[int, ...], optimizer: str = "sgd") -> Callable[[], float]:
    """PyTorch eager: nn.Sequential, F.cross_entropy, optim.SGD or optim.Adam."""
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
    hyper = OPTIMIZERS[optimizer]
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), **hyper)
    else:
        opt = torch.optim.SGD(model.parameters(), **hyper)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def make_jax(batch: int, sizes: tuple[int, ...], optimizer: str = "sgd") -> Callable[[], float]:
    """JAX: the whole step under jax.jit (compiled once, outside the timing); plain SGD only
    (its rows for the other optimizers are left out, see :func:`available_systems`)."""
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


def available_systems(optimizer: str = "sgd") -> list[str]:
    """The systems whose optional dependencies are installed (JAX for plain SGD only)."""
    return [
        name
        for name, (_, dep) in SYSTEMS.items()
        if (dep is None or has(dep)) and (name != "jax" or optimizer == "sgd")
    ]


def fastbp_trace_path(step: Callable[[], float]) -> str:
    """Which path a ``make_fastbp_trace`` step takes, in words, for the tables."""
    compiled, why = step.traced.compiled
    if not compiled:
        return f"replay ({why})"
    folded = "fold_alpha" in (step.traced.source or "")
    return "compiled, SGD folded into the GEMMs" if folded else "compiled"
