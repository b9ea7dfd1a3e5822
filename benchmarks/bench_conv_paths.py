"""The 3x3 conv layer of issue 15 through its two paths: Winograd F(2x2, 3x3) and im2col.

A script (and, under pytest with ``--benchmark-disable``, a smoke test)::

    python benchmarks/bench_conv_paths.py --cpu 0 --rounds 20

``conv2d`` forward and the backward of its output's sum, for ``(64, 32, 14, 14)`` with 64
3x3 filters and padding 1 (the MNIST CNN's second conv at batch 64), float32, one thread:

* *winograd*: what ``fastbp.nn.functional.conv2d`` takes for this layer;
* *im2col*: the same call with the Winograd layout switched off (the pixel-major unfolding);
* *PyTorch eager* (oneDNN), when torch is installed.

The three take turns, one call each per round; the medians and their ratios are printed, then
where the Winograd call's time goes (each kernel timed alone on the layer's arrays).

``--steps 1,16,64,256`` times the MNIST CNN's whole training step instead (the network of
``benchmarks/cnn_systems.py``, plain SGD and SGD with momentum) at those batch sizes, with the
library's choice of path, with the Winograd layout switched off, and in PyTorch: what the
batch-size threshold of the Winograd layout (``fastbp.ops.conv._WINOGRAD_MIN_TILES``) was set
from. (The step takes Winograd only from 1500 output tiles, e.g. batch 31 at 14x14; below,
the first two columns run the same code.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

import fastbp as fb
import fastbp.nn.functional as F
from fastbp.kernels import winograd
from fastbp.ops import conv as conv_ops

SHAPE, OUT_CHANNELS = (64, 32, 14, 14), 64


@contextlib.contextmanager
def im2col_only() -> Iterator[None]:
    """Switch the Winograd layout off (for comparisons)."""
    saved = conv_ops._WINOGRAD_MIN_CHANNELS
    conv_ops._WINOGRAD_MIN_CHANNELS = 1 << 30
    try:
        yield
    finally:
        conv_ops._WINOGRAD_MIN_CHANNELS = saved


def make_calls(shape=SHAPE, out_channels=OUT_CHANNELS) -> dict[str, Callable[[], None]]:
    """Forward + backward of the layer, per path, on the same arrays."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (0.1 * rng.standard_normal((out_channels, shape[1], 3, 3))).astype(np.float32)
    b = np.zeros(out_channels, np.float32)
    tensors = [fb.tensor(a, requires_grad=True) for a in (x, w, b)]

    def fastbp_call() -> None:
        F.conv2d(*tensors, padding=1).sum().backward()

    def im2col_call() -> None:
        with im2col_only():
            fastbp_call()

    calls = {"winograd": fastbp_call, "im2col": im2col_call}
    try:
        import torch
    except ImportError:
        return calls
    torch.set_num_threads(1)
    ours = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]

    def torch_call() -> None:
        torch.nn.functional.conv2d(*ours, padding=1).sum().backward()

    calls["PyTorch eager"] = torch_call
    return calls


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def kernel_split(shape=SHAPE, out_channels=OUT_CHANNELS, repeat: int = 10) -> dict[str, float]:
    """Milliseconds of each piece of the Winograd layer, timed alone."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((out_channels, shape[1], 3, 3)).astype(np.float32)
    out = shape[2:]
    v = winograd.input_tiles(x, (1, 1), out)
    u = winograd.weight_transform(w)
    m = winograd.batched_product(v, u)
    y, _ = winograd.output_tiles(m, None, (shape[0], out_channels, *out), False)
    dm, _ = winograd.output_tiles_adjoint(None, np.ones_like(y), False)
    dv = winograd.batched_product(dm, u.transpose(0, 2, 1))
    pieces = {
        "input transform": lambda: winograd.input_tiles(x, (1, 1), out),
        "products (3)": lambda: (
            winograd.batched_product(v, u),
            winograd.batched_product(dm, u.transpose(0, 2, 1)),
            winograd.batched_product(v.transpose(0, 2, 1), dm),
        ),
        "output transform": lambda: winograd.output_tiles(m, None, y.shape, False),
        "output adjoint": lambda: winograd.output_tiles_adjoint(None, y, False),
        "input adjoint": lambda: winograd.input_tiles_adjoint(dv, shape, (1, 1), out),
    }
    return {name: _median_ms(fn, repeat) for name, fn in pieces.items()}


def measure(rounds: int = 20, shape=SHAPE, out_channels=OUT_CHANNELS) -> dict[str, float]:
    """Median milliseconds per path, the paths taking turns call by call (see ``_turns``)."""
    calls = make_calls(shape, out_channels)
    for fn in calls.values():  # first calls compile and fill the buffer pool
        fn()
        fn()
    return _turns(calls, rounds)


def _turns(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each call over ``rounds`` turns, the order rotating each turn
    (the call after PyTorch's finds the caches cold: a fixed order favours the others)."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def table(medians: dict[str, float], split: dict[str, float]) -> str:
    """Markdown: medians and ratios, then the Winograd call's pieces."""
    base = medians.get("PyTorch eager")
    rows = ["| path | median | / im2col | / PyTorch |", "| --- | ---: | ---: | ---: |"]
    for name, ms in medians.items():
        vs_torch = f"{ms / base:.2f}x" if base else "–"
        rows.append(f"| {name} | {ms:.2f} ms | {ms / medians['im2col']:.2f}x | {vs_torch} |")
    rows += ["", "| piece of the Winograd call | alone |", "| --- | ---: |"]
    rows += [f"| {name} | {ms:.2f} ms |" for name, ms in split.items()]
    return "\n".join(rows)


def step_rows(batches: list[int], seconds: float = 2.0, no_winograd_tiles: bool = False) -> str:
    """Markdown: the CNN step at each batch, with and without the Winograd layout, and torch."""
    import cnn_systems

    threshold = conv_ops._WINOGRAD_MIN_TILES
    if no_winograd_tiles:  # tests: small batches, still through the Winograd layout
        conv_ops._WINOGRAD_MIN_TILES = 1
    rows = [
        "| step | library's choice | im2col only | PyTorch eager | choice / im2col "
        "| choice / PyTorch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    try:
        for batch in batches:
            for optimizer in ("sgd", "sgd-momentum"):
                chosen = cnn_systems.make_fastbp(batch, optimizer)
                plain = cnn_systems.make_fastbp(batch, optimizer)

                def im2col_step(plain=plain) -> None:
                    with im2col_only():
                        plain()

                calls = {"choice": chosen, "im2col": im2col_step}
                if "torch" in cnn_systems.available():
                    calls["torch"] = cnn_systems.make_torch(batch, optimizer)
                for fn in calls.values():
                    for _ in range(3):
                        fn()
                rounds = max(6, int(seconds / (0.001 * batch + 0.002) / len(calls)))
                ms = _turns(calls, rounds)
                torch_ms = ms.get("torch")
                rows.append(
                    f"| B{batch} {optimizer} | {ms['choice']:.2f} ms | {ms['im2col']:.2f} ms | "
                    + (f"{torch_ms:.2f} ms" if torch_ms else "–")
                    + f" | {ms['choice'] / ms['im2col']:.2f}x | "
                    + (f"{ms['choice'] / torch_ms:.2f}x |" if torch_ms else "– |")
                )
    finally:
        conv_ops._WINOGRAD_MIN_TILES = threshold
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--rounds", type=int, default=20, help="calls per path [20]")
    parser.add_argument("--steps", default=None, help="comma-separated batch sizes: CNN steps")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.steps:
        text = step_rows([int(b) for b in args.steps.split(",")])
    else:
        text = table(measure(args.rounds), kernel_split())
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blas_info import blas_line

    print(blas_line() + "\n\n" + text)
    return text


def test_conv_paths_run_and_agree(monkeypatch):
    """Both paths give the same gradients, and the script's tables come out."""
    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_TILES", 1)  # small shapes: quick
    shape = (2, 16, 6, 5)
    calls = make_calls(shape, 16)
    grads = []
    for name in ("winograd", "im2col"):
        x = fb.tensor(np.random.default_rng(1).standard_normal(shape), requires_grad=True)
        w = fb.tensor(np.random.default_rng(2).standard_normal((16, 16, 3, 3)), requires_grad=True)
        with contextlib.nullcontext() if name == "winograd" else im2col_only():
            y = F.conv2d(x, w, padding=1)
            assert (y._node.saved[3][-1] == "winograd") == (name == "winograd")
            (y * y).sum().backward()
        grads.append((y.data, x.grad, w.grad))
    for ours, theirs in zip(*grads, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    text = table(measure(1, shape, 16), kernel_split(shape, 16, repeat=1))
    assert "| winograd |" in text and "| im2col |" in text and "output adjoint" in text
    assert len(calls) >= 2
    steps = step_rows([2], seconds=0.0, no_winograd_tiles=True)
    assert "| B2 sgd |" in steps and "| B2 sgd-momentum |" in steps
    assert conv_ops._WINOGRAD_MIN_TILES == 1  # as the monkeypatch left it


if __name__ == "__main__":
    main()
