"""The per-thread switches the engine reads on every op: grad mode, anomaly mode, observer.

They are ``threading.local`` so that two threads can train two models at once
without one's ``no_grad`` or trace reaching into the other's graph.
"""

from __future__ import annotations

import threading

__all__ = ["state"]


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.grad_enabled = True  # see fastbp.core.grad_mode
        self.anomaly = False  # see fastbp.core.anomaly
        self.observer = None  # see fastbp.core.observer


state = _ThreadState()
