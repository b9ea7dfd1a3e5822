"""``fb.trace`` on the MNIST CNN's training step (issue 15): what replays, and what it freezes.

A traced step must give the eager step's weights, bit for bit, after several steps on new
batches, for the CNN alone and with batch norm. Dropout draws a new mask every step eagerly;
a replay must not reuse the first step's masks without saying so: either it re-draws them
(and then matches the eager weights), or the recording warns that they are frozen.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim
from fastbp.examples.mnist_cnn import build_model
from fastbp.jit import TracerWarning

BATCH = 4
STEPS = 4


def cnn(batch_norm: bool = False) -> nn.Sequential:
    """The issue's CNN (the example's without dropout), optionally with BatchNorm2d per conv."""
    fb.manual_seed(0)
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 32), (32, 64)):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)]
    return nn.Sequential(*layers)


def _batches():
    rng = np.random.default_rng(1)
    return [
        (rng.random((BATCH, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH))
        for _ in range(STEPS)
    ]


def train(model: nn.Sequential, traced: bool, seed: int = 5):
    """Run STEPS SGD-momentum steps; return the model, the losses and the traced function."""
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    body_runs = []

    def step(x, y):
        body_runs.append(1)  # Python in the body runs only when a step is recorded
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    fn = fb.trace(step) if traced else step
    fb.manual_seed(seed)  # the dropout masks' generator, the same for both runs
    losses = [fn(fb.from_numpy(x), y).item() for x, y in _batches()]
    if traced:
        assert len(body_runs) == 1, "the traced step was recorded again instead of replayed"
    return model, losses, fn


def _params(model):
    return [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch-norm"])
def test_traced_cnn_step_replays_to_the_eager_weights(batch_norm):
    eager, eager_losses, _ = train(cnn(batch_norm), traced=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TracerWarning)  # nothing may be frozen here
        traced, traced_losses, fn = train(cnn(batch_norm), traced=True)
    assert traced_losses == eager_losses
    assert len(set(traced_losses)) == STEPS  # new batches, new losses: it is not replaying
    for i, (a, b) in enumerate(zip(_params(eager), _params(traced), strict=True)):
        np.testing.assert_array_equal(b, a, err_msg=f"parameter {i}")
    compiled, why = fn.compiled
    assert compiled or why  # replayed: it says why it is not compiled


def test_traced_batch_norm_updates_its_running_statistics():
    # The batch_norm_train op updates the buffers in its forward, so replays repeat it.
    eager = train(cnn(batch_norm=True), traced=False)[0]
    traced = train(cnn(batch_norm=True), traced=True)[0]
    for i in (1, 5):  # the two BatchNorm2d layers
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(
                np.asarray(getattr(traced[i], name).data),
                np.asarray(getattr(eager[i], name).data),
                rtol=1e-6,
                err_msg=f"layer {i} {name}",
            )


def test_traced_dropout_either_redraws_its_masks_or_warns_that_they_are_frozen():
    eager, eager_losses, _ = train(build_model(seed=0), traced=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced, traced_losses, fn = train(build_model(seed=0), traced=True)
    frozen = [str(w.message) for w in caught if issubclass(w.category, TracerWarning)]
    same = all(np.array_equal(a, b) for a, b in zip(_params(eager), _params(traced), strict=True))
    if not frozen:
        # Re-drawn from the same generator: the replay is the eager step.
        assert same and traced_losses == eager_losses
        return
    # Frozen: the warning names both masks, (B, 64, 7, 7) after the convs and (B, 128).
    text = " ".join(frozen)
    assert f"({BATCH}, 64, 7, 7)" in text and f"({BATCH}, 128)" in text, text
    assert "frozen" in fn.compiled[1]
    # ... and the replay really reused them: after the recording step it differs from eager.
    assert traced_losses[0] == eager_losses[0]
    assert not same
