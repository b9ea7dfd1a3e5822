"""The core: ``Tensor``, the engine that records and walks the tape, grad and anomaly modes.

Everything else in fastbp sits on top of this package; it imports nothing above it.
The ops register themselves in :mod:`fastbp.core.registry`, and layers above watch
the engine through :mod:`fastbp.core.observer`.
"""

from .anomaly import detect_anomaly
from .engine import FREED, Node, apply, backward, grad, unbroadcast
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .registry import OPS, Op, defop
from .tensor import Tensor
