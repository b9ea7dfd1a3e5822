"""Moving weights between PyTorch and fastbp: :func:`load_torch_state_dict` and
:func:`to_torch_state_dict`.

Names are the same on both sides when the fastbp model mirrors the PyTorch one
(``nn.Sequential`` children ``0``, ``1``, ...; attribute names of custom modules), so
only layouts need mapping. The one that differs is :class:`fastbp.nn.Linear`'s weight:
PyTorch stores ``(out_features, in_features)``, fastbp ``(in_features, out_features)``
(so that the forward is ``x @ W`` without a transpose); it is transposed both ways.
Convolution, normalisation and embedding weights have PyTorch's layouts already;
buffers (BatchNorm's running statistics and ``num_batches_tracked``) map by name.

torch is imported only when a path is loaded or tensors are made.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .nn.layers import Linear
from .nn.module import Module

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]


def _transposed_names(model: Module) -> set[str]:
    """The state-dict names whose arrays are stored transposed relative to PyTorch."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, Linear):
            names.add(f"{prefix}.weight" if prefix else "weight")
    return names


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(
            f"load_torch_state_dict: entry '{name}' is a {type(value).__name__}, not a tensor "
            f"or array"
        ) from exc


def load_torch_state_dict(
    model: Module, state_dict: Mapping[str, Any] | str | os.PathLike, strict: bool = True
) -> None:
    """Copy a PyTorch state dict (or a ``torch.save`` file of one) into a fastbp model.

    Every key is matched by name; Linear weights are transposed from PyTorch's
    ``(out, in)`` to fastbp's ``(in, out)``; values are cast to each parameter's dtype.
    Everything is checked before anything is copied.

    Parameters
    ----------
    model : Module
        A fastbp model that mirrors the PyTorch one.
    state_dict : mapping of str to torch.Tensor/ndarray, or a path
        ``torch_model.state_dict()``, or a file written by ``torch.save`` (loaded with
        ``weights_only=True``; a checkpoint dict with a ``"state_dict"`` or
        ``"model"`` entry is unwrapped).
    strict : bool, default True
        Require exactly the model's keys.

    Raises
    ------
    KeyError
        If ``strict`` and keys are missing or unexpected (both listed).
    ValueError
        If a shape does not match (names the key, PyTorch's shape and the shape PyTorch
        would need).

    Example
    -------
    >>> import numpy as np
    >>> from fastbp import nn
    >>> from fastbp.interop import load_torch_state_dict
    >>> model = nn.Sequential(nn.Linear(3, 2))
    >>> torch_like = {"0.weight": np.arange(6.0).reshape(2, 3), "0.bias": np.zeros(2)}
    >>> load_torch_state_dict(model, torch_like)
    >>> model[0].weight.data.shape, float(model[0].weight.data[2, 0])
    ((3, 2), 2.0)
    """
    if isinstance(state_dict, str | os.PathLike):
        import torch

        state_dict = torch.load(os.fspath(state_dict), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if (
                isinstance(state_dict, Mapping)
                and key in state_dict
                and isinstance(state_dict[key], Mapping)
            ):
                state_dict = state_dict[key]
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"load_torch_state_dict: expected a state dict (mapping) or a path, got "
            f"{type(state_dict).__name__}"
        )
    flip = _transposed_names(model)
    own = model.state_dict()
    converted = {}
    problems = []
    for name, value in state_dict.items():
        array = _to_numpy(value, name)
        if name in own:
            if name in flip:
                if array.ndim != 2:
                    problems.append(f"'{name}' is a Linear weight but has shape {array.shape}")
                    continue
                array = array.T
            if array.shape != own[name].shape:
                want = own[name].shape[::-1] if name in flip else own[name].shape
                problems.append(
                    f"'{name}' has shape {tuple(_to_numpy(value, name).shape)} in the PyTorch "
                    f"state dict but this model needs {tuple(want)} in PyTorch's layout"
                )
                continue
        converted[name] = array
    if problems:
        raise ValueError("load_torch_state_dict: " + "; ".join(problems))
    missing = [k for k in own if k not in converted]
    unexpected = [k for k in converted if k not in own]
    if strict and (missing or unexpected):
        raise KeyError(
            f"load_torch_state_dict: missing keys {missing} and unexpected keys {unexpected}; "
            f"the fastbp model must mirror the PyTorch one (same attribute names, "
            f"nn.Sequential indices); pass strict=False to load only the matching keys"
        )
    model.load_state_dict({k: v for k, v in converted.items() if k in own}, strict=False)


def to_torch_state_dict(model: Module, as_numpy: bool = False) -> OrderedDict:
    """The model's state dict in PyTorch's names and layouts, ready for
    ``torch_model.load_state_dict``.

    Parameters
    ----------
    model : Module
    as_numpy : bool, default False
        Return NumPy arrays instead of ``torch.Tensor`` s (no torch needed).

    Returns
    -------
    OrderedDict of str to torch.Tensor (or ndarray)
        Copies; Linear weights transposed to ``(out, in)``.

    Example
    -------
    >>> from fastbp import nn
    >>> from fastbp.interop import to_torch_state_dict
    >>> sd = to_torch_state_dict(nn.Linear(3, 2), as_numpy=True)
    >>> sd["weight"].shape
    (2, 3)
    """
    flip = _transposed_names(model)
    out: OrderedDict = OrderedDict()
    for name, array in model.state_dict().items():
        out[name] = np.ascontiguousarray(array.T if name in flip else array)
    if as_numpy:
        return out
    import torch

    return OrderedDict((k, torch.from_numpy(v.copy())) for k, v in out.items())
