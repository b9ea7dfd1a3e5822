"""``fastbp.autograd``: the engine's public names in one place, as in ``torch.autograd``.

The engine lives in :mod:`fastbp.core.engine` (record, walk, accumulate), grad modes in
:mod:`fastbp.core.grad_mode`, anomaly mode in :mod:`fastbp.core.anomaly`.
"""

from .core.anomaly import detect_anomaly
from .core.engine import FREED, Node, apply, backward, grad, unbroadcast
from .core.grad_mode import enable_grad, is_grad_enabled, no_grad
from .core.registry import Op

__all__ = [
    "Op", "Node", "FREED", "apply", "backward", "grad", "no_grad", "enable_grad",
    "is_grad_enabled", "detect_anomaly", "unbroadcast",
]  # fmt: skip
