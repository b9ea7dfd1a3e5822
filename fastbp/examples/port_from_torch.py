"""Port a PyTorch model and training loop to fastbp, and check that the losses agree.

The model definition and the loop below are written once, against a "library"
namespace (``nn``, ``optim``, ``lr_scheduler``, ``clip_grad_norm_``, a tensor
constructor), and run twice: with ``torch`` and with ``fastbp``. Both start from the
same initial weights (PyTorch's, copied with :func:`fastbp.load_torch_state_dict`),
see the same batches (one seeded :class:`fastbp.data.DataLoader` over a
:class:`~fastbp.data.TensorDataset`) and use the same pieces: ``nn.Sequential`` of
``Linear``/``Tanh``/``ReLU``, ``CrossEntropyLoss(label_smoothing=0.1)``, ``AdamW``
with two parameter groups (no weight decay on biases), ``OneCycleLR`` and
``clip_grad_norm_``. The losses are printed side by side; in float64 they agree to
~1e-12 at every step. Run it with::

    python -m fastbp.examples.port_from_torch [--steps 40]

At the end the trained fastbp weights go back into the torch model with
:func:`fastbp.to_torch_state_dict`, and both give the same predictions.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Sequence

import numpy as np

import fastbp as fb
from fastbp.data import DataLoader, TensorDataset


def build_model(nn):
    """The PyTorch-style model definition, unchanged for either library."""
    return nn.Sequential(
        nn.Linear(10, 32),
        nn.Tanh(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 3),
    )


def train(lib, model, batches, steps):
    """The PyTorch-style training loop, unchanged for either library."""
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = lib.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-2,
    )
    sched = lib.lr_scheduler.OneCycleLR(opt, max_lr=3e-2, total_steps=steps)
    loss_fn = lib.nn.CrossEntropyLoss(label_smoothing=0.1)
    losses = []
    for x, y in batches[:steps]:
        opt.zero_grad()
        loss = loss_fn(model(lib.tensor(x)), lib.labels(y))
        loss.backward()
        lib.clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
    return losses


def libraries():
    """The two namespaces the code above is written against."""
    import torch

    torch_lib = types.SimpleNamespace(
        nn=torch.nn,
        optim=torch.optim,
        lr_scheduler=torch.optim.lr_scheduler,
        clip_grad_norm_=torch.nn.utils.clip_grad_norm_,
        tensor=torch.from_numpy,
        labels=torch.from_numpy,
    )
    fastbp_lib = types.SimpleNamespace(
        nn=fb.nn,
        optim=fb.optim,
        lr_scheduler=fb.optim.lr_scheduler,
        clip_grad_norm_=fb.nn.utils.clip_grad_norm_,
        tensor=fb.tensor,
        labels=np.asarray,
    )
    return torch_lib, fastbp_lib


def run(steps: int = 40, seed: int = 0, verbose: bool = True) -> tuple[list[float], list[float]]:
    """Train both and return (torch losses, fastbp losses).

    Example
    -------
    >>> t, f = run(steps=3, verbose=False)  # doctest: +SKIP
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 10))
    y = (x[:, :3].argmax(1) + (x[:, 3] > 1)) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=seed)
    batches = [b for _ in range(-(-steps // len(loader))) for b in loader][:steps]

    torch_lib, fastbp_lib = libraries()
    torch_model = build_model(torch_lib.nn).double()
    fastbp_model = build_model(fastbp_lib.nn).double()
    fb.load_torch_state_dict(fastbp_model, torch_model.state_dict())  # same initial weights

    torch_losses = train(torch_lib, torch_model, batches, steps)
    fastbp_losses = train(fastbp_lib, fastbp_model, batches, steps)
    if verbose:
        print(f"{'step':>4} {'torch loss':>18} {'fastbp loss':>18} {'|diff|':>9}")
        for i, (a, b) in enumerate(zip(torch_losses, fastbp_losses, strict=True)):
            print(f"{i:4d} {a:18.12f} {b:18.12f} {abs(a - b):9.1e}")
    # And back: the fastbp-trained weights, loaded by PyTorch, predict the same.
    torch_model.load_state_dict(fb.to_torch_state_dict(fastbp_model))
    with torch.no_grad():
        back = torch_model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(back - fastbp_model(fb.tensor(x)).data).max())
    if verbose:
        print(f"fastbp-trained weights in torch: max |output difference| = {diff:.1e}")
    return torch_losses, fastbp_losses


def main(argv: Sequence[str] | None = None) -> float:
    """Command-line entry point; returns the largest loss difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t, f = run(args.steps, args.seed)
    worst = max(abs(a - b) for a, b in zip(t, f, strict=True))
    print(f"largest loss difference over {args.steps} steps: {worst:.1e}")
    return worst


if __name__ == "__main__":
    main()
