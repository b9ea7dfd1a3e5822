"""Neural-network building blocks: modules, layers, functional ops and initialisers.

Example
-------
>>> import numpy as np, fastbp as fb
>>> from fastbp import nn
>>> import fastbp.nn.functional as F
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> loss = F.cross_entropy(net(fb.zeros(2, 4)), np.array([0, 2]))
>>> loss.backward()
>>> [p.grad.shape for p in net.parameters()]
[(4, 8), (8,), (8, 3), (3,)]
"""

from . import functional, init, utils
from .activation import (
    CELU,
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ReLU6,
    SiLU,
    Softmax,
    Softmin,
    Softplus,
    Softsign,
)
from .containers import Flatten, Identity, ModuleDict, ModuleList, Unflatten
from .layers import Linear, ReLU, Sequential, Sigmoid, Tanh
from .module import Module, Parameter, RemovableHandle

__all__ = [
    "Module",
    "Parameter",
    "Linear",
    "Sequential",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "functional",
    "init",
    "ModuleList",
    "ModuleDict",
    "Identity",
    "Flatten",
    "Unflatten",
    "RemovableHandle",
    "utils",
]

__all__ += [  # issue 14: activation modules
    "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus", "Softsign",
    "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "LogSigmoid", "Softmin", "Softmax",
    "LogSoftmax",
]  # fmt: skip

from .conv import (  # noqa: E402  (issue 15: convolution and pooling modules)
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Embedding,
    MaxPool1d,
    MaxPool2d,
)

__all__ += [  # issue 15
    "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "ConvTranspose2d", "Embedding",
]  # fmt: skip

from .norm import (  # noqa: E402  (issue 15: normalisation and dropout modules)
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Dropout2d,
    GroupNorm,
    LayerNorm,
)

__all__ += ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout", "Dropout2d"]

# ---- loss modules (issue 14) ------------------------------------------------------------------
from .loss import (  # noqa: E402
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)

__all__ += [
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
]
