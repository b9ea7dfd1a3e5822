"""Where the eager MLP step's time goes: the GEMM floor, the kernels alone, the engine.

Issue 12 asks the eager B16 784-128-10 step to take at most 1.5x its GEMM floor (the
step's matrix products alone, into preallocated buffers). This script splits the eager
step into what no engine can avoid and what the engine adds, side by side in one
process, in alternating rounds:

* ``floor``: the products alone (``mlp_systems.make_gemm_floor``);
* ``kernels``: the very kernel calls the eager step makes, in the same order, called
  directly, with no tensor, tape or optimizer object: the fused Linear+ReLU forward,
  the Linear forward, the fused softmax cross-entropy, the scaling of its gradient,
  both Linear backwards, the fused ReLU-backward + bias sum, and one SGD update per
  parameter. Its weights after a few steps equal the eager step's exactly (the test
  ``tests/test_eager_budget.py`` checks it), so it does the eager step's arithmetic;
* ``eager``: the eager fastbp step of ``compare.py`` (``nn.Sequential``,
  ``F.cross_entropy``, ``optim.SGD``);
* ``torch``: PyTorch eager, when installed.

It also times each kernel of the ``kernels`` step on its own. Example::

    taskset -c 0 python benchmarks/eager_budget.py --batches 1,16 --optimizers sgd,sgd-momentum
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlp_systems as ms  # noqa: E402  (the benchmarks' shared problem and systems)

SIZES = (784, 128, 10)


class KernelStep:
    """The eager step's kernels, called directly on plain arrays (no engine).

    ``pieces`` accumulates the seconds each kernel took when ``timed`` is set.
    """

    def __init__(self, batch: int, optimizer: str = "sgd") -> None:
        x, y, weights = ms.problem(batch, SIZES)
        self.x, self.labels = x, y.astype(np.intp)
        (w1, b1), (w2, b2) = weights
        self.params = [w1.copy(), b1.copy(), w2.copy(), b2.copy()]
        self.buffers = [np.zeros(p.size, p.dtype) for p in self.params]
        hyper = ms.OPTIMIZERS[optimizer]
        self.hyper = (
            float(hyper["lr"]),
            float(hyper.get("momentum", 0.0)),
            0.0,  # dampening
            0.0,  # weight decay
            False,  # nesterov
        )
        self.steps = 0
        self.pieces: dict[str, list[float]] = {}

    def __call__(self, timed: bool = False) -> None:
        from fastbp import kernels
        from fastbp.kernels import dispatch

        clock = time.perf_counter
        marks = [clock()]
        w1, b1, w2, b2 = self.params
        h = dispatch.linear_forward(self.x, w1, b1, "relu")
        marks.append(clock())
        z = dispatch.linear_forward(h, w2, b2)
        marks.append(clock())
        _, dlogits, _, _ = dispatch.softmax_cross_entropy(z, self.labels)
        marks.append(clock())
        # The mean's gradient, as the cross_entropy op's vjp scales it.
        dz = dlogits * dlogits.dtype.type(1.0 / len(dlogits))
        marks.append(clock())
        dh, dw2, db2 = dispatch.linear_backward(h, w2, dz, True, True, True)
        marks.append(clock())
        dz1, db1 = dispatch.activation_backward_bias("relu", h, dh)
        marks.append(clock())
        _, dw1, _ = dispatch.linear_backward(self.x, w1, dz1, False, True, False)
        marks.append(clock())
        first = self.steps == 0
        for p, g, buf in zip(self.params, (dw1, db1, dw2, db2), self.buffers, strict=True):
            kernels.sgd_update(p.reshape(-1), g.reshape(-1), buf, *self.hyper, first)
        marks.append(clock())
        self.steps += 1
        if timed:
            names = ("linear+relu", "linear", "softmax-ce", "scale", "linear bwd", "relu bwd",
                     "linear bwd (dW)", "sgd update")  # fmt: skip
            for name, start, end in zip(names, marks[:-1], marks[1:], strict=True):
                self.pieces.setdefault(name, []).append(end - start)


def systems(batch: int, optimizer: str) -> dict[str, Callable[[], object]]:
    """The step of each system for one row."""
    out: dict[str, Callable[[], object]] = {
        "floor": ms.make_gemm_floor(batch, SIZES, optimizer),
        "kernels": KernelStep(batch, optimizer),
        "eager": ms.make_fastbp(batch, SIZES, optimizer),
    }
    if ms.has("torch"):
        import torch

        torch.set_num_threads(1)
        out["torch"] = ms.make_torch(batch, SIZES, optimizer)
    return out


def measure(batch: int, optimizer: str, rounds: int, per_round: int) -> dict[str, float]:
    """Median microseconds per step of each system, in alternating rounds."""
    steps = systems(batch, optimizer)
    for step in steps.values():  # warm-up: kernels load, buffers fill
        for _ in range(20):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    kernel_step = steps["kernels"]
    for _ in range(rounds * per_round):
        kernel_step(timed=True)
    result = {name: 1e6 * float(np.median(t)) for name, t in times.items()}
    result.update({f"piece:{k}": 1e6 * float(np.median(v)) for k, v in kernel_step.pieces.items()})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16", help="comma-separated [1,16]")
    parser.add_argument("--optimizers", default="sgd", help="sgd,sgd-momentum")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [(int(b), o) for o in args.optimizers.split(",") for b in args.batches.split(",")]
    results = {(b, o): measure(b, o, args.rounds, args.per_round) for b, o in rows}
    has_torch = all("torch" in r for r in results.values())
    head = "| row | GEMM floor | kernels alone | eager | kernels / floor | eager / floor |"
    print(head + (" eager / PyTorch |" if has_torch else ""))
    print("| --- |" + " ---: |" * (6 if has_torch else 5))
    for (b, o), r in results.items():
        line = (
            f"| B{b} {o} | {r['floor']:.0f} us | {r['kernels']:.0f} us | {r['eager']:.0f} us "
            f"| {r['kernels'] / r['floor']:.2f}x | {r['eager'] / r['floor']:.2f}x |"
        )
        print(line + (f" {r['eager'] / r['torch']:.2f}x |" if has_torch else ""))
    print("\nEach kernel of the 'kernels alone' step, median microseconds:\n")
    pieces = [k for k in next(iter(results.values())) if k.startswith("piece:")]
    print("| kernel | " + " | ".join(f"B{b} {o}" for b, o in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for piece in pieces:  # a row per kernel: the table stays narrow
        print(f"| {piece[6:]} | " + " | ".join(f"{r[piece]:.1f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
