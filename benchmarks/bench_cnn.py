"""pytest-benchmark: the MNIST CNN's training step, one conv layer and max-pool, fastbp vs torch.

Rows are grouped so ``pytest benchmarks/bench_cnn.py --benchmark-group-by=group`` prints fastbp
and PyTorch eager side by side. Pin them for numbers you can compare::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 1 \\
        python -m pytest benchmarks/bench_cnn.py --benchmark-group-by=group

Under ``--benchmark-disable`` (CI) every row runs once, and the checks below make sure fastbp's
numbers are of the same computation as torch's (same loss, same gradients); torch rows are
skipped without torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import optim

BATCHES = [16, 64]


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _data(batch: int):
    rng = np.random.default_rng(0)
    return rng.random((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)


def fastbp_cnn_step(batch: int):
    """One SGD-momentum step of the example's CNN (fastbp.examples.mnist_cnn.build_model)."""
    from fastbp.examples.mnist_cnn import build_model

    model = build_model(seed=0)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _data(batch)

    def step():
        loss = F.cross_entropy(model(fb.from_numpy(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, model


def torch_cnn_step(batch: int, model_from=None):
    """The same network in PyTorch eager; ``model_from`` copies a fastbp model's weights."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )  # fmt: skip
    if model_from is not None:
        with torch.no_grad():
            pairs = zip(net.parameters(), model_from.parameters(), strict=True)
            for p, ours in pairs:
                # fastbp's Linear stores its weight (in, out), torch's (out, in).
                value = ours.data.T if p.ndim == 2 else ours.data
                p.copy_(torch.tensor(np.ascontiguousarray(value)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = (torch.tensor(a) for a in _data(batch))

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def plain_model(seed: int = 0):
    """The issue's benchmark network (no dropout): conv-ReLU-pool x2, Linear-ReLU, Linear.

    ``nn.Sequential`` records each Conv2d -> ReLU pair as one fused ``conv2d_relu`` op.
    """
    from fastbp import nn

    fb.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def fastbp_plain_step(batch: int):
    """One plain-SGD step of :func:`plain_model` (the issue's target row)."""
    model = plain_model()
    opt = optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(batch)

    def step():
        loss = F.cross_entropy(model(fb.from_numpy(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, model


def _torch_step_with(batch: int, model_from, momentum: float):
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )  # fmt: skip
    if model_from is not None:
        with torch.no_grad():
            for p, ours in zip(net.parameters(), model_from.parameters(), strict=True):
                value = ours.data.T if p.ndim == 2 else ours.data
                p.copy_(torch.tensor(np.ascontiguousarray(value)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=momentum)
    x, y = (torch.tensor(a) for a in _data(batch))

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("system", ["fastbp", "torch"])
def test_plain_cnn_train_step(benchmark, system, batch):
    if system == "torch" and not _have_torch():
        pytest.skip("torch is not installed")
    if system == "fastbp":
        step = fastbp_plain_step(batch)[0]
    else:
        step = _torch_step_with(batch, None, momentum=0.0)
    benchmark.group = f"plain cnn-train-step (SGD) B{batch}"
    benchmark(step)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("system", ["fastbp", "torch"])
def test_cnn_train_step(benchmark, system, batch):
    if system == "torch" and not _have_torch():
        pytest.skip("torch is not installed")
    step = fastbp_cnn_step(batch)[0] if system == "fastbp" else torch_cnn_step(batch)
    benchmark.group = f"cnn-train-step B{batch}"
    benchmark(step)


def _conv_inputs():
    rng = np.random.default_rng(1)
    return (
        rng.standard_normal((64, 32, 14, 14)).astype(np.float32),
        (rng.standard_normal((64, 32, 3, 3)) * 0.05).astype(np.float32),
        rng.standard_normal(64).astype(np.float32),
    )


def fastbp_conv(arrays):
    x, w, b = (fb.tensor(a, requires_grad=True) for a in arrays)

    def run():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=1).sum().backward()
        return x.grad, w.grad, b.grad

    return run


def torch_conv(arrays):
    import torch

    x, w, b = (torch.tensor(a, requires_grad=True) for a in arrays)

    def run():
        x.grad = w.grad = b.grad = None
        torch.nn.functional.conv2d(x, w, b, padding=1).sum().backward()
        return x.grad, w.grad, b.grad

    return run


@pytest.mark.parametrize("system", ["fastbp", "torch"])
def test_conv_layer_forward_backward(benchmark, system):
    if system == "torch" and not _have_torch():
        pytest.skip("torch is not installed")
    run = (fastbp_conv if system == "fastbp" else torch_conv)(_conv_inputs())
    benchmark.group = "conv2d (64,32,14,14) 64x3x3 pad 1, fwd+bwd"
    benchmark(run)


def _conv5_inputs():
    rng = np.random.default_rng(4)
    return (
        rng.standard_normal((64, 1, 28, 28)).astype(np.float32),
        (rng.standard_normal((32, 1, 5, 5)) * 0.2).astype(np.float32),
        rng.standard_normal(32).astype(np.float32),
    )


def fastbp_conv5(arrays):
    x, w, b = (fb.tensor(a, requires_grad=True) for a in arrays)

    def run():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b).sum().backward()
        return x.grad, w.grad, b.grad

    return run


def torch_conv5(arrays):
    import torch

    x, w, b = (torch.tensor(a, requires_grad=True) for a in arrays)

    def run():
        x.grad = w.grad = b.grad = None
        torch.nn.functional.conv2d(x, w, b).sum().backward()
        return x.grad, w.grad, b.grad

    return run


@pytest.mark.parametrize("system", ["fastbp", "torch"])
def test_conv5x5_layer_forward_backward(benchmark, system):
    if system == "torch" and not _have_torch():
        pytest.skip("torch is not installed")
    run = (fastbp_conv5 if system == "fastbp" else torch_conv5)(_conv5_inputs())
    benchmark.group = "conv2d (64,1,28,28) 32x5x5, fwd+bwd"
    benchmark(run)


def _pool_fastbp(x):
    t = fb.tensor(x, requires_grad=True)

    def run():
        t.grad = None
        F.max_pool2d(t, 2).sum().backward()
        return t.grad

    return run


def _pool_torch(x):
    import torch

    t = torch.tensor(x, requires_grad=True)

    def run():
        t.grad = None
        torch.nn.functional.max_pool2d(t, 2).sum().backward()
        return t.grad

    return run


@pytest.mark.parametrize("system", ["fastbp", "torch"])
def test_max_pool_forward_backward(benchmark, system):
    if system == "torch" and not _have_torch():
        pytest.skip("torch is not installed")
    x = np.random.default_rng(2).standard_normal((64, 32, 28, 28)).astype(np.float32)
    run = (_pool_fastbp if system == "fastbp" else _pool_torch)(x)
    benchmark.group = "max_pool2d 2x2 (64,32,28,28), fwd+bwd"
    benchmark(run)


# ---- the rows compute the same thing ----------------------------------------------------------


def test_fastbp_and_torch_steps_agree():
    pytest.importorskip("torch")
    from fastbp import nn

    ours, model = fastbp_cnn_step(16)
    # The example's model has dropout, torch's copy has none: agree with the masks off.
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    theirs = torch_cnn_step(16, model_from=model)
    for _ in range(3):
        np.testing.assert_allclose(ours(), theirs(), rtol=2e-4)


def test_plain_steps_agree():
    pytest.importorskip("torch")
    ours, model = fastbp_plain_step(16)
    theirs = _torch_step_with(16, model, momentum=0.0)
    for _ in range(3):
        np.testing.assert_allclose(ours(), theirs(), rtol=2e-4)


def test_conv_and_pool_rows_agree():
    pytest.importorskip("torch")
    arrays = _conv_inputs()
    for ours, theirs in zip(fastbp_conv(arrays)(), torch_conv(arrays)(), strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-3)
    arrays = _conv5_inputs()
    for ours, theirs in zip(fastbp_conv5(arrays)(), torch_conv5(arrays)(), strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-3)
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_pool_fastbp(x)(), _pool_torch(x)().numpy())
