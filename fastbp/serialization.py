"""Crash-safe checkpoints for state dicts.

A checkpoint is an ordinary ``.npz`` archive: every ndarray (and NumPy scalar) leaf becomes one
member, and a JSON manifest member records the tree structure and the Python type of every
leaf, so :func:`load` rebuilds exactly what :func:`save` was given without ever unpickling.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["save", "load"]

_MANIFEST_KEY = "__fastbp_manifest__"
_FORMAT = "fastbp-checkpoint"
_VERSION = 1


# --------------------------------------------------------------------------------------------
# Atomic file writing (also used by fastbp.data)
# --------------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    # Without this the rename itself may be lost on power failure even though the data is
    # on disk. Some platforms (Windows) cannot open directories; durability is best effort there.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the ``with`` block succeeds.

    The data goes to a hidden temporary file in the same directory (so ``os.replace`` is a
    same-filesystem rename, which POSIX guarantees atomic); it is flushed and fsynced before
    the rename. On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with an explicit mode (rather than mkstemp's 0600) keeps the user's umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


# --------------------------------------------------------------------------------------------
# Tree <-> manifest encoding
# --------------------------------------------------------------------------------------------


def _encode(obj: Any, where: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    # bool is checked before int because bool is a subclass of int.
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, bool):
        return {"t": "bool", "v": bool(obj)}
    if isinstance(obj, int):
        return {"t": "int", "v": int(obj)}
    if isinstance(obj, float):
        # json writes repr(), which round-trips floats exactly (NaN/Infinity included).
        return {"t": "float", "v": float(obj)}
    if isinstance(obj, str):
        return {"t": "str", "v": str(obj)}
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError(
                f"save: {where} is an array of dtype {arr.dtype}, which would need pickle; "
                "convert it to a numeric, bool or string dtype first."
            )
        key = f"a{len(arrays)}"
        arrays[key] = arr
        kind = "array" if isinstance(obj, np.ndarray) else "npscalar"
        return {"t": kind, "k": key}
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"save: {where} has a key {k!r} of type {type(k).__name__}; "
                    "state dict keys must be str."
                )
            items.append([k, _encode(v, f"{where}[{k!r}]", arrays)])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {
            "t": kind,
            "items": [_encode(v, f"{where}[{i}]", arrays) for i, v in enumerate(obj)],
        }
    raise TypeError(
        f"save: {where} has unsupported type {type(obj).__module__}.{type(obj).__qualname__}; "
        "leaves must be ndarrays, NumPy scalars, int, float, bool, str or None "
        "(inside dicts with str keys, lists or tuples)."
    )


class _Corrupt(Exception):
    """Internal signal that the manifest does not describe a valid tree."""


def _decode(node: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if not isinstance(node, dict) or "t" not in node:
        raise _Corrupt(f"malformed manifest node {node!r:.80}")
    kind = node["t"]
    if kind == "none":
        return None
    if kind in ("bool", "int", "float", "str"):
        pytype = {"bool": bool, "int": int, "float": float, "str": str}[kind]
        value = node.get("v")
        if type(value) is not pytype and not (pytype is float and type(value) is int):
            raise _Corrupt(f"leaf of type {kind} holds {value!r:.80}")
        return pytype(value)
    if kind in ("array", "npscalar"):
        key = node.get("k")
        if key not in arrays:
            raise _Corrupt(f"manifest refers to missing array member {key!r}")
        arr = arrays[key]
        return arr if kind == "array" else arr[()]
    if kind == "dict":
        return {str(k): _decode(v, arrays) for k, v in node["items"]}
    if kind == "list":
        return [_decode(v, arrays) for v in node["items"]]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in node["items"])
    raise _Corrupt(f"unknown node type {kind!r}")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def save(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Save a state dict to ``path`` atomically.

    The file is an uncompressed ``.npz`` archive readable with ``np.load`` (no pickle). It is
    written to a temporary file in the same directory, fsynced and renamed over ``path``, so
    ``path`` always holds either the previous complete checkpoint or the new one, even if the
    process is killed mid-save. No ``.npz`` suffix is appended: the file is written to exactly
    ``path``.

    Parameters
    ----------
    obj : Mapping[str, Any]
        A dict with str keys whose values are ndarrays, NumPy scalars, ``int``, ``float``,
        ``bool``, ``str``, ``None``, or (nested) dicts, lists and tuples of those.
    path : str or os.PathLike
        Destination file. Its directory must exist.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If ``obj`` is not a dict, a key is not a str, or a leaf has an unsupported type
        (e.g. an object-dtype array). Nothing is written in that case.
    FileNotFoundError
        If the directory of ``path`` does not exist.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> save({"w": np.ones(3, np.float32), "step": 10}, p)
    >>> load(p)["step"]
    10
    """
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"save: expected a state dict (a dict with str keys), got {type(obj).__name__}; "
            "pass e.g. model.state_dict() rather than the model itself."
        )
    path = Path(path)
    # Encode first so that an unsupported leaf raises before any file is created.
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, "state", arrays)
    manifest = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree})
    members = dict(arrays)
    members[_MANIFEST_KEY] = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"save: directory {path.parent} does not exist; create it before saving {path}."
        )
    with _atomic_open(path) as f:
        np.savez(f, **members)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Load a state dict written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        Checkpoint file.

    Returns
    -------
    dict[str, Any]
        The same structure that was saved: ndarrays with their dtype and shape, NumPy
        scalars as NumPy scalars, Python scalars with their Python type, tuples as tuples.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is truncated or corrupt, is not an ``.npz`` archive, or is an ``.npz``
        that was not written by :func:`save`.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> save({"opt": {"lr": 0.1, "betas": (0.9, 0.999)}}, p)
    >>> load(p)["opt"]["betas"]
    (0.9, 0.999)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load: checkpoint {path} does not exist; check the path.")
    if path.is_dir():
        raise IsADirectoryError(f"load: {path} is a directory, expected a checkpoint file.")
    bad = (
        f"load: {path} is not a valid fastbp checkpoint (truncated, corrupt, or not written "
        "by fastbp.save)"
    )
    try:
        # We own the file handle: np.load leaks its own when a truncated zip fails to parse.
        with open(path, "rb") as f:
            # Sniff the type first: for non-zip input np.load would fall back to (disallowed)
            # unpickling and suggest allow_pickle=True, which is the wrong advice here.
            head = f.read(6)
            f.seek(0)
            if not head:
                raise ValueError(f"{bad}: the file is empty. Re-save it.")
            if head.startswith(b"\x93NUMPY"):
                raise ValueError(f"{bad}: it is a plain .npy file. Re-save it with fastbp.save.")
            if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise ValueError(
                    f"{bad}: it is not an .npz (zip) archive (starts with {head!r}). Re-save it."
                )
            npz = np.load(f, allow_pickle=False)
            with npz:
                if _MANIFEST_KEY not in npz.files:
                    raise ValueError(
                        f"{bad}: the .npz has no {_MANIFEST_KEY!r} member, so it was not written "
                        "by fastbp.save. Load it with np.load, or re-save it with fastbp.save."
                    )
                manifest = json.loads(npz[_MANIFEST_KEY].tobytes().decode("utf-8"))
                arrays = {k: npz[k] for k in npz.files if k != _MANIFEST_KEY}
    except ValueError as exc:
        if str(exc).startswith(bad):
            raise
        raise ValueError(f"{bad}: {str(exc).rstrip('.')}. Re-save it.") from exc
    except zipfile.BadZipFile as exc:
        # A cut-off zip loses its central directory, which zipfile reports as "not a zip file".
        raise ValueError(
            f"{bad}: the zip archive is truncated or damaged ({exc}). Re-save it."
        ) from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        detail = str(exc).rstrip(".")
        raise ValueError(f"{bad}: {type(exc).__name__}: {detail}. Re-save it.") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != _FORMAT
        or "tree" not in manifest
    ):
        raise ValueError(f"{bad}: the manifest is not a fastbp manifest. Re-save it.")
    if manifest.get("version") != _VERSION:
        raise ValueError(
            f"load: {path} uses checkpoint format version {manifest.get('version')!r}, but this "
            f"fastbp reads version {_VERSION}; upgrade fastbp or re-save the checkpoint."
        )
    try:
        state = _decode(manifest["tree"], arrays)
    except (_Corrupt, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{bad}: {exc}. Re-save it.") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{bad}: the top level is not a dict. Re-save it.")
    return state
