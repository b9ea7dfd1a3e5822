"""Long runs and concurrency: nothing grows, nothing mixes, saved arrays are released."""

import gc
import os
import threading
import weakref

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim


def make_model(seed, sizes=(20, 32, 5)):
    fb.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_data(seed, n=256, n_in=20, classes=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(np.float32), rng.integers(0, classes, n)


def train(model, x, y, steps, batch=32, momentum=0.9):
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    for i in range(steps):
        lo = (i * batch) % len(x)
        opt.zero_grad()
        loss = F.cross_entropy(model(fb.from_numpy(x[lo : lo + batch])), y[lo : lo + batch])
        loss.backward()
        opt.step()
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_two_threads_train_two_models_bit_identically_to_one_after_the_other():
    data = [make_data(1), make_data(2)]
    sequential = [train(make_model(s), *data[s - 1], steps=150) for s in (1, 2)]

    models = [make_model(1), make_model(2)]  # built first: init draws from the global seed
    results = [None, None]
    barrier = threading.Barrier(2)

    def worker(i):
        barrier.wait()  # start together, so the two tapes really interleave
        results[i] = train(models[i], *data[i], steps=150)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, sequential, strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_grad_mode_of_one_thread_does_not_leak_into_another():
    model = make_model(3)
    x, y = make_data(3, n=8)
    seen = {}
    stop = threading.Event()

    def evaluator():
        with fb.no_grad():
            while not stop.is_set():
                model(fb.from_numpy(x))

    t = threading.Thread(target=evaluator)
    t.start()
    try:
        for _ in range(50):
            loss = F.cross_entropy(model(fb.from_numpy(x)), y)
            seen.setdefault("requires_grad", set()).add(loss.requires_grad)
            loss.backward()
    finally:
        stop.set()
        t.join()
    assert seen["requires_grad"] == {True}


def _weak_refs_to_saved_arrays(output):
    """Weak references to every array any record behind ``output`` saved."""
    refs = []
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        for item in node.saved if isinstance(node.saved, tuple) else (node.saved,):
            if isinstance(item, np.ndarray):
                refs.append(weakref.ref(item))
        stack.extend(t.grad_fn for t in node.inputs if t.grad_fn is not None)
    return refs


def test_every_saved_intermediate_is_released_after_backward():
    model = make_model(4, sizes=(20, 32, 16, 5))
    x, y = make_data(4, n=16)
    loss = F.cross_entropy(model(fb.from_numpy(x)), y)
    saved = _weak_refs_to_saved_arrays(loss)
    assert len(saved) >= 7
    loss.backward()  # the caller still holds ``loss``: its graph must let go anyway
    gc.collect()
    params = {id(p.data) for p in model.parameters()}
    alive = [r() for r in saved if r() is not None and id(r()) not in params]
    # Only the data batch (owned by the caller) may survive.
    assert all(a is x for a in alive), [a.shape for a in alive]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_resident_memory_does_not_grow_over_2000_steps():
    # The MNIST example's network (784-512-256-10) and optimizer, on random data.
    model = make_model(5, sizes=(784, 512, 256, 10))
    x, y = make_data(5, n=1024, n_in=784, classes=10)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps(n):
        for i in range(n):
            lo = (i * 32) % len(x)
            opt.zero_grad()
            F.cross_entropy(model(fb.from_numpy(x[lo : lo + 32])), y[lo : lo + 32]).backward()
            opt.step()

    steps(200)  # warm-up: JIT, allocator pools, the kernels' buffer pool
    gc.collect()
    before = _rss_bytes()
    steps(2000)
    gc.collect()
    after = _rss_bytes()
    assert after <= before * 1.01, f"RSS grew from {before} to {after} bytes"
