"""Optimizers with PyTorch's update rules: ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``,
``Adagrad``, ``Adamax``, ``NAdam`` and ``RAdam``, one module each, on the base class of
:mod:`fastbp.optim.optimizer`.

How an update is made fast
--------------------------
At construction an optimizer packs its parameters into one flat, contiguous buffer
per dtype and **rebinds each** ``p.data`` **to a reshaped view of that buffer**
(values are copied, shapes kept; code holding the old array keeps a stale copy,
so read ``p.data`` afresh). Gradients get one flat buffer too:
``zero_grad(set_to_none=False)`` fills it with zeros and sets each ``p.grad`` to its
view, and backward then accumulates into those views in place. A whole update is then
one kernel call over the flat buffers, whatever the number of layers::

    flat params  [ w1 ........ | b1 .. | w2 ..... | b2 ]   <- p.data are views
    flat grads   [ dw1 ....... | db1 . | dw2 .... | db2 ]  <- p.grad are views
    flat state   [ momentum / Adam moments, same layout ]

With the default ``zero_grad()`` (``p.grad = None``, as in PyTorch) backward gives each
parameter a fresh array, and ``step`` updates each parameter from its own array, without
copying it into the flat buffer. ``step`` stays correct however the gradients arrived: a
``p.grad`` of another dtype, shape or layout is copied into the flat buffer first; a
parameter whose ``p.grad`` is None is skipped, as in PyTorch (no update, no state
change), by updating the others one by one. A ``p.data`` that was rebound by
someone else is copied back into the flat buffer.

The update kernels of SGD and Adam are ``fastbp.kernels.sgd_update`` and
``fastbp.kernels.adam_update`` (Numba); RMSprop, Adagrad, Adamax, NAdam and RAdam update
the flat buffers with NumPy expressions (each a handful of passes). All follow PyTorch's
update rules step for step, and read each parameter group's hyperparameters at every step.
"""

from __future__ import annotations

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .nadam import NAdam
from .optimizer import FlatBuffers, Optimizer, UpdateRule
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "FlatBuffers",
    "UpdateRule",
    "RMSprop",
    "Adagrad",
    "Adamax",
    "NAdam",
    "RAdam",
]

from . import lr_scheduler  # noqa: E402  (uses only param_groups: no import cycle)
