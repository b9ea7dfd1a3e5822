"""MNIST loading, IDX file I/O and a minimal mini-batch iterator.

The download path is deliberately injectable for offline testing: ``MIRRORS`` is the ordered
list of base URLs, ``_fetch(url) -> bytes`` performs one request, and ``SHA256`` holds the
expected digest of every *decompressed* file. Tests may monkeypatch any of the three.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastbp.serialization import _atomic_open

__all__ = [
    "load_mnist",
    "read_idx",
    "write_idx",
    "DataLoader",
    "MIRRORS",
    "SHA256",
    "Dataset",
    "TensorDataset",
    "Subset",
    "random_split",
    "default_collate",
]

_log = logging.getLogger(__name__)

MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# Digests of the decompressed files: the .gz bytes differ between mirrors that recompressed.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_MNIST_FILES = (
    ("train-images-idx3-ubyte", 2051),
    ("train-labels-idx1-ubyte", 2049),
    ("t10k-images-idx3-ubyte", 2051),
    ("t10k-labels-idx1-ubyte", 2049),
)

_FETCH_TIMEOUT_S = 60.0

# IDX type byte -> big-endian dtype, as defined by the format.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


# --------------------------------------------------------------------------------------------
# IDX format
# --------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed, if ``.gz``) content of ``path``."""
    if not path.name.endswith(".gz"):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(
            f"{path}: corrupt or truncated gzip file ({exc}). Delete it and download it again "
            "(load_mnist(download=True) does this for the MNIST files)."
        ) from exc


def _parse_idx(raw: bytes, path: Path) -> tuple[int, np.ndarray]:
    """Parse IDX bytes into ``(magic, array)``; the array is native-endian and writable."""
    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX file: expected at least 4 header bytes, got {len(raw)}. "
            "Delete it and download it again."
        )
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic number {magic} (0x{magic:08x}); expected e.g. 2049 "
            "(labels) or 2051 (images). The file is not an IDX file or is corrupt: delete it "
            "and download it again."
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{path}: truncated IDX file: expected {header_len} header bytes for {ndim} "
            f"dimensions, got {len(raw)}. Delete it and download it again."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header_len + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing data"
        raise ValueError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.newbyteorder('=')}, "
            f"so expected {expected} bytes, got {len(raw)}. Delete it and download it again."
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies, which also makes the result writable (frombuffer over bytes is read-only).
    return magic, arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File to read. It is decompressed if its name ends with ``.gz``.

    Returns
    -------
    np.ndarray
        Native-endian, writable array with the shape and dtype given by the IDX header.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the magic number is invalid, the file is truncated or has trailing bytes, or the
        gzip stream is corrupt.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte.gz")
    >>> write_idx(p, np.arange(5, dtype=np.uint8))
    >>> read_idx(p)
    array([0, 1, 2, 3, 4], dtype=uint8)
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)[1]


def write_idx(path: str | os.PathLike, array: ArrayLike) -> None:
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends with ``.gz``.

    The write is atomic: ``path`` is replaced only once the whole file is on disk.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; its directory must exist.
    array : ArrayLike
        Data with at least one dimension and dtype uint8, int8, int16, int32, float32 or
        float64 (the types IDX can represent).

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If the dtype is not representable in IDX.
    ValueError
        If the array is 0-d, has more than 255 dimensions, or a dimension of 2**32 or more.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "imgs-idx3-ubyte")
    >>> write_idx(p, np.zeros((2, 28, 28), np.uint8))
    >>> read_idx(p).shape
    (2, 28, 28)
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        supported = ", ".join(str(dt) for dt in _IDX_CODES)
        raise TypeError(
            f"write_idx({path}): dtype {arr.dtype} cannot be stored in IDX (supported: "
            f"{supported}); convert first, e.g. array.astype(np.int32)."
        )
    if not 1 <= arr.ndim <= 255 or any(d >= 2**32 for d in arr.shape):
        raise ValueError(
            f"write_idx({path}): IDX needs 1 to 255 dimensions each below 2**32, got shape "
            f"{arr.shape}; reshape the array (e.g. a scalar to shape (1,))."
        )
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    with _atomic_open(path) as f:
        if path.name.endswith(".gz"):
            # mtime=0 keeps output byte-reproducible; filename is what gunzip would restore.
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------


def _user_cache() -> Path:
    """``$XDG_CACHE_HOME/fastbp/mnist``, else ``~/.cache/fastbp/mnist``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values must be ignored.
    if cache and os.path.isabs(cache):
        return Path(cache) / "fastbp" / "mnist"
    return Path.home() / ".cache" / "fastbp" / "mnist"


def _default_root() -> Path:
    """``$FASTBP_DATA``, else ``$XDG_CACHE_HOME/fastbp/mnist``, else ``~/.cache/fastbp/mnist``."""
    env = os.environ.get("FASTBP_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache()


def _fetch(url: str) -> bytes:
    """Return the body of ``url``; any failure raises (the caller moves on to the next mirror)."""
    # Imported here: urllib.request pulls in http.client, ssl and email (~15 ms at every
    # ``import fastbp``), and only a download needs them.
    import urllib.request

    # Some CDNs reject urllib's default User-Agent.
    request = urllib.request.Request(url, headers={"User-Agent": "fastbp"})
    with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response:
        return response.read()


def _download(name: str, target: Path) -> None:
    """Fetch ``name``.gz from the first mirror whose content matches ``SHA256[name]``."""
    expected = SHA256[name]
    failures: list[str] = []
    mismatch = False
    for mirror in MIRRORS:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        _log.info("downloading %s", url)
        try:
            payload = _fetch(url)
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except Exception as exc:  # any failure (HTTP, DNS, bad gzip...) means: next mirror
            failures.append(f"  {url}: {type(exc).__name__}: {exc}")
            continue
        if digest != expected:
            mismatch = True
            failures.append(f"  {url}: decompressed SHA-256 is {digest}, expected {expected}")
            continue
        # Verified in memory, so the cache only ever sees a complete, correct file.
        with _atomic_open(target) as f:
            f.write(payload)
        return
    detail = "\n".join(failures) if failures else "  (MIRRORS is empty)"
    message = (
        f"Could not download {target.name} into {target.parent}:\n{detail}\n"
        f"Download {name}.gz manually into {target.parent} (or point FASTBP_DATA at a "
        "directory holding the MNIST files)."
    )
    # A checksum mismatch is a data problem (ValueError); pure fetch failures are I/O problems.
    if mismatch:
        raise ValueError(message)
    raise OSError(message)


def _locate(root: Path, name: str, download: bool) -> Path:
    gz, plain = root / (name + ".gz"), root / name
    if gz.is_file():
        return gz
    if plain.is_file():
        return plain
    if not download:
        raise FileNotFoundError(
            f"MNIST file {name} not found: looked for {gz} and {plain}. Put the files there, set "
            "FASTBP_DATA to the directory that holds them, or call load_mnist(download=True)."
        )
    _download(name, gz)
    return gz


def _holds_mnist(directory: Path) -> bool:
    """True if ``directory`` holds at least one of the four MNIST files (.gz or not)."""
    try:
        return any(
            (directory / n).is_file() or (directory / (n + ".gz")).is_file()
            for n, _ in _MNIST_FILES
        )
    except OSError:  # unreadable: not a candidate
        return False


def _subdirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _path_hint(root: Path) -> str:
    """Suggest what a mistyped data directory was meant to be.

    The nearest existing parent and, near it (two levels down at most, so a typo next to a
    large tree stays cheap), the directories that hold MNIST files, closest name first.
    """
    import difflib

    parent = root.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    near: list[Path] = []
    for child in _subdirs(parent)[:100]:
        near.append(child)
        if len(near) < 400:  # bounded: a typo under / or $HOME must still answer at once
            near.extend(_subdirs(child)[:50])
    holders = [d for d in near if _holds_mnist(d)]
    if holders:
        holders.sort(key=lambda d: -difflib.SequenceMatcher(None, str(d), str(root)).ratio())
        hint = f"Did you mean {holders[0]}? It holds MNIST files."
        if len(holders) > 1:
            hint += f" So do {', '.join(str(d) for d in holders[1:4])}."
        return hint
    names = [d.name for d in _subdirs(parent)]
    close = difflib.get_close_matches(root.relative_to(parent).parts[0], names, n=3)
    hint = f"The nearest existing parent is {parent}"
    if close:
        hint += f"; its closest subdirectories are {', '.join(close)}"
    return hint + "."


def _check_root(root: Path, named_by: str, download: bool | None) -> bool:
    """Decide whether missing files may be downloaded into ``root``; raise on a likely typo.

    ``download=None`` (the default) downloads into the per-user cache, or into a directory
    the user named that already holds some of the files (a partial download to complete).
    A named directory that does not exist, or exists and holds none of the files, is far
    more often a mistyped path than a wish to download 11 MB there: raise, create nothing.
    """
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"load_mnist: the data directory {root} ({named_by}) is a file, not a directory. "
            "Point it at the directory holding the MNIST IDX files."
        )
    if download is True or (download is None and named_by == "the default cache"):
        return True
    if not root.exists():
        raise FileNotFoundError(
            f"load_mnist: the data directory {root} ({named_by}) does not exist; nothing was "
            f"created or downloaded. {_path_hint(root)} Set FASTBP_DATA (or --data-dir) to the "
            f"directory holding {_MNIST_FILES[0][0]}(.gz) and the other MNIST files, or pass "
            "download=True to download them into a new directory there."
        )
    if download is False:
        return False
    if not _holds_mnist(root):
        raise FileNotFoundError(
            f"load_mnist: the data directory {root} ({named_by}) holds none of the MNIST IDX "
            f"files; nothing was downloaded. {_path_hint(root / '_')} Set FASTBP_DATA (or "
            f"--data-dir) to the directory holding {_MNIST_FILES[0][0]}(.gz) and the other MNIST "
            "files, or pass download=True to download them into this one."
        )
    return True


def _make_dirs(root: Path) -> list[Path]:
    """Create ``root`` and missing parents; return those created, deepest last."""
    missing = []
    d = root
    while not d.exists():
        missing.append(d)
        d = d.parent
    root.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_if_empty(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()  # fails (and is left) if anything was written into it
        except OSError:
            return


# Decompressing the 11 MB of .gz files is most of load_mnist's time (0.3 s of 0.4 s). So each
# official file, once decompressed and found to match SHA256, is kept as a .npy in the per-user
# cache beside the downloads, with a stamp naming the source it came from (resolved path, size,
# mtime) and the digest it matched. Later calls map that .npy while the source is unchanged.
# Only official content is kept, so one .npy per name serves every directory holding the files.


def _source_stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"source": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_files(name: str) -> tuple[Path, Path]:
    """The decompressed array of MNIST file ``name`` and its stamp, in the per-user cache."""
    directory = _user_cache()
    return directory / f"{name}.npy", directory / f"{name}.npy.json"


def _load_decompressed(path: Path, name: str) -> np.ndarray | None:
    """``path``'s content from the decompressed cache, or None if the cache has no valid copy."""
    array_path, stamp_path = _cache_files(name)
    try:
        stamp = json.loads(stamp_path.read_text())
        wanted = {**_source_stamp(path), "sha256": SHA256[name]}
        if {key: stamp.get(key) for key in wanted} != wanted:
            return None
        # Copy-on-write mapping: writable like read_idx's arrays, and the file never changes.
        arr = np.load(array_path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no entry, a stale one, or a damaged file: read the source instead
    if arr.dtype != np.uint8 or list(arr.shape) != stamp.get("shape"):
        return None
    return arr.view(np.ndarray)


def _store_decompressed(path: Path, name: str, arr: np.ndarray) -> None:
    """Keep ``arr``, the verified content of ``path``, in the decompressed cache."""
    array_path, stamp_path = _cache_files(name)
    stamp = {**_source_stamp(path), "sha256": SHA256[name], "shape": list(arr.shape)}
    try:
        array_path.parent.mkdir(parents=True, exist_ok=True)
        # The array first: a stamp never names a .npy that is not complete on disk.
        with _atomic_open(array_path) as f:
            np.save(f, arr, allow_pickle=False)
        with _atomic_open(stamp_path) as f:
            f.write(json.dumps(stamp).encode())
    except OSError as exc:  # a read-only or full cache only costs the next call its speed
        _log.info("load_mnist: could not cache %s decompressed in %s: %s", name, array_path, exc)


def load_mnist(
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    verify: bool = False,
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST from the four standard IDX files, downloading missing ones.

    For each file ``root/<name>.gz`` is used, else the uncompressed ``root/<name>``. Missing
    files are downloaded (if ``download``) from the ``MIRRORS`` in order; each download is
    checked against ``SHA256`` before it is atomically moved into place.

    Parameters
    ----------
    root : str, os.PathLike or None, optional
        Directory holding the files. Defaults to ``$FASTBP_DATA`` if set, else
        ``$XDG_CACHE_HOME/fastbp/mnist``, else ``~/.cache/fastbp/mnist``.
    download : bool or None, optional
        True: download missing files, creating ``root`` if needed. False: never download.
        None (the default): download into the per-user cache, or into a ``root`` (or
        ``$FASTBP_DATA``) that already holds some of the files; a named directory that does
        not exist or holds none of them raises instead, as it is most likely a typo.
        A directory created for a download that fails is removed again.
    verify : bool, optional
        Also check the SHA-256 of files already on disk, reading them rather than their
        decompressed copies (~0.35 s). Default False: downloads are always verified.
    cache : bool, optional
        Keep the decompressed official files as ``.npy`` in the per-user cache
        (``$XDG_CACHE_HOME/fastbp/mnist``, else ``~/.cache/fastbp/mnist``, 55 MB), and map
        them on later calls while the ``.gz`` file's path, size and modification time are
        unchanged: loading then takes ~0.02 s instead of ~0.35 s. A copy is written only for
        content whose SHA-256 matches ``SHA256``, atomically; failing to write it is not an
        error. Default True.

    Returns
    -------
    x_train, y_train, x_test, y_test : np.ndarray
        uint8 arrays of shapes ``(N, 28, 28)``, ``(N,)``, ``(M, 28, 28)``, ``(M,)`` with
        ``N = 60000`` and ``M = 10000`` for the real data set (sizes come from the headers).

    Raises
    ------
    FileNotFoundError
        If a file is missing and ``download`` is False, or (``download=None``) if the named
        directory does not exist or holds no MNIST file; the message suggests the likely
        intended directory.
    NotADirectoryError
        If ``root`` is a file.
    ValueError
        If a file has a wrong magic number, is truncated, fails ``verify``, if image and label
        counts disagree, or if every mirror served data with the wrong checksum.
    OSError
        If a file is missing and no mirror could be reached.

    Example
    -------
    >>> x_train, y_train, x_test, y_test = load_mnist()  # doctest: +SKIP
    >>> x_train.shape, y_train.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    if root is not None:
        named_by = "the root argument"
    elif os.environ.get("FASTBP_DATA"):
        named_by = "from $FASTBP_DATA"
    else:
        named_by = "the default cache"
    root = Path(root).expanduser() if root is not None else _default_root()
    may_download = _check_root(root, named_by, download)
    paths: list[Path] = []
    created: list[Path] = []
    try:
        for name, _ in _MNIST_FILES:
            if may_download and not root.is_dir():
                created = _make_dirs(root)
            paths.append(_locate(root, name, may_download))
    except BaseException:
        _remove_if_empty(created)  # never leave an empty directory behind
        raise
    arrays: list[np.ndarray] = []
    for path, (name, want_magic) in zip(paths, _MNIST_FILES, strict=True):
        # Only .gz sources are cached: an uncompressed file is already quick to read.
        cached = cache and path.name.endswith(".gz")
        arr = _load_decompressed(path, name) if cached and not verify else None
        if arr is not None:  # its digest matched SHA256 when stored, so its magic is right
            arrays.append(arr)
            continue
        raw = _read_bytes(path)
        digest = hashlib.sha256(raw).hexdigest() if verify or cached else None
        if verify:
            if digest != SHA256[name]:
                raise ValueError(
                    f"{path}: SHA-256 of the decompressed content is {digest}, expected "
                    f"{SHA256[name]}. The file is corrupt or not the official MNIST file: "
                    "delete it and call load_mnist(download=True)."
                )
        magic, arr = _parse_idx(raw, path)
        if magic != want_magic:
            kind = "images" if want_magic == 2051 else "labels"
            raise ValueError(
                f"{path}: bad magic number {magic} for MNIST {kind}: expected {want_magic} "
                f"(uint8, {want_magic & 0xFF}-D). The file is misnamed or corrupt: delete it "
                "and download it again."
            )
        if cached and digest == SHA256[name]:
            _store_decompressed(path, name, arr)
        arrays.append(arr)
    x_train, y_train, x_test, y_test = arrays
    for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(images) != len(labels):
            raise ValueError(
                f"MNIST {split} files in {root} disagree: {images.shape[0]} images but "
                f"{labels.shape[0]} labels. One file is stale or corrupt: delete both and "
                "download them again."
            )
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


class DataLoader:
    """Iterate over a dataset in mini-batches, as ``torch.utils.data.DataLoader``.

    Two forms:

    * ``DataLoader(x, y, batch_size, shuffle=True, seed=None, drop_last=False)``: the fast
      path over in-memory arrays. Each batch is ``x[idx], y[idx]`` (views when not
      shuffled), with one NumPy fancy-index per array and batch.
    * ``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
      collate_fn=None, drop_last=False, generator=None)``: PyTorch's form over any
      map-style dataset (``__getitem__`` and ``__len__``). Samples are combined by
      ``collate_fn`` (default :func:`default_collate`: NumPy arrays stacked along a new
      first axis, tuples/dicts collated field by field). A :class:`TensorDataset` of
      arrays with the default collate takes the fast path.

    Each ``iter()`` is one epoch that yields every sample exactly once. With ``shuffle``
    a new permutation is drawn per epoch from one generator (``np.random.default_rng(
    seed)``, or ``generator``), so epochs differ but the run is reproducible.

    Parameters
    ----------
    x : ArrayLike or Dataset
        Inputs (with ``y``), or a map-style dataset (without ``y``).
    y : ArrayLike, optional
        Targets, same length as ``x``.
    batch_size : int, default 1 (required with arrays)
    shuffle : bool, optional
        Default True with arrays (fastbp's earlier behaviour), False with a dataset
        (PyTorch's).
    seed : int or None, optional
        Seed for the shuffling generator; None draws fresh OS entropy.
    drop_last : bool, default False
        Drop the final incomplete batch.
    sampler : iterable of int, optional
        The order of sample indices (excludes ``shuffle``), in both forms; e.g.
        ``fastbp.distributed.DistributedSampler`` for this rank's shard (call its
        ``set_epoch`` before each epoch).
    batch_sampler : iterable of lists of int, optional
        Yields each batch's indices (excludes batch_size, shuffle, sampler, drop_last).
    collate_fn : callable, optional
        Turns a list of samples into a batch.
    generator : numpy.random.Generator, optional
        The shuffling generator (instead of ``seed``).
    num_workers : int, default 0
        Only 0 is supported (batches are made in the calling thread).

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length, either is 0-d, ``batch_size < 1``, or
        options conflict as in PyTorch.
    TypeError
        If ``batch_size`` is not an int.

    Example
    -------
    >>> import numpy as np
    >>> loader = DataLoader(np.arange(10), np.arange(10), batch_size=4, seed=0)
    >>> len(loader), [len(xb) for xb, yb in loader]
    (3, [4, 4, 2])
    >>> ds = TensorDataset(np.arange(6), np.arange(6) * 10)
    >>> [yb.tolist() for _, yb in DataLoader(ds, batch_size=4)]
    [[0, 10, 20, 30], [40, 50]]
    """

    def __init__(
        self,
        x: ArrayLike,
        y: ArrayLike | None = None,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        seed: int | None = None,
        drop_last: bool = False,
        *,
        sampler: Any = None,
        batch_sampler: Any = None,
        collate_fn: Any = None,
        generator: np.random.Generator | None = None,
        num_workers: int = 0,
    ) -> None:
        if num_workers != 0:
            raise ValueError(
                f"DataLoader: num_workers={num_workers} is not supported; batches are built "
                f"in the calling thread (num_workers=0)"
            )
        self._rng = generator if generator is not None else np.random.default_rng(seed)
        self.drop_last = drop_last
        self.dataset = None
        self.sampler = None
        if y is None and not isinstance(x, np.ndarray):
            self._init_dataset(x, batch_size, shuffle, sampler, batch_sampler, collate_fn)
            return
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        # A sampler (e.g. fastbp.distributed.DistributedSampler) gives the order instead.
        self.shuffle = sampler is None if shuffle is None else shuffle
        self.sampler = sampler
        self._init_arrays(x, y, batch_size)

    def _init_arrays(self, x: ArrayLike, y: ArrayLike, batch_size: Any) -> None:
        self.x = np.asarray(x)
        self.y = np.asarray(y)
        if self.x.ndim == 0 or self.y.ndim == 0:
            raise ValueError(
                f"DataLoader: x and y need a leading sample axis, got shapes {self.x.shape} and "
                f"{self.y.shape}; wrap single samples in an array of length 1."
            )
        if len(self.x) != len(self.y):
            raise ValueError(
                f"DataLoader: x has {len(self.x)} samples (shape {self.x.shape}) but y has "
                f"{len(self.y)} (shape {self.y.shape}); pass inputs and targets of equal length."
            )
        self.batch_size = _check_batch_size(batch_size)
        self._fast = True

    def _init_dataset(self, dataset, batch_size, shuffle, sampler, batch_sampler, collate_fn):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(
                f"DataLoader: expected arrays x, y or a map-style dataset (with __getitem__ "
                f"and __len__), got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        if sampler is not None and self.shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or self.shuffle or sampler is not None or self.drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            self.batch_size = None
        else:
            self.batch_size = _check_batch_size(batch_size)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        # A TensorDataset of arrays collated by default is the array fast path (also with
        # a sampler: one fancy-index per batch instead of a Python loop over samples).
        self._fast = (
            isinstance(dataset, TensorDataset)
            and len(dataset.tensors) == 2
            and batch_sampler is None
            and collate_fn is None
        )
        if self._fast:
            self.x, self.y = dataset.tensors

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.dataset is not None and self.batch_sampler is not None:
            return len(self.batch_sampler)
        if self.sampler is not None:
            n = len(self.sampler)
        else:
            n = len(self.x) if self._fast else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        # Drawn here rather than inside the generator so the epoch's order is fixed when
        # iter() is called, not when the first batch is requested.
        if self._fast:
            if self.sampler is not None:
                order = np.fromiter(self.sampler, dtype=np.intp)
            else:
                order = self._rng.permutation(len(self.x)) if self.shuffle else None
            return self._batches(order)
        return self._dataset_batches()

    def _dataset_batches(self) -> Iterator[Any]:
        if self.batch_sampler is not None:
            for idx in self.batch_sampler:
                yield self.collate_fn([self.dataset[i] for i in idx])
            return
        if self.sampler is not None:
            order = list(self.sampler)
        elif self.shuffle:
            order = self._rng.permutation(len(self.dataset)).tolist()
        else:
            order = range(len(self.dataset))
        bs = self.batch_size
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            if self.drop_last and len(idx) < bs:
                return
            yield self.collate_fn([self.dataset[i] for i in idx])

    def _batches(self, order: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        bs = self.batch_size
        n = len(self.x) if order is None else len(order)
        for start in range(0, (n // bs if self.drop_last else -(-n // bs)) * bs, bs):
            stop = min(start + bs, n)
            if order is None:
                yield self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]


# ------------------------------------------------------------------ datasets (issue 14)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"DataLoader: batch_size must be an int, got {type(batch_size).__name__} "
            f"{batch_size!r}."
        )
    if batch_size < 1:
        raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}.")
    return int(batch_size)


class Dataset:
    """A map-style dataset: subclasses implement ``__getitem__(i)`` and ``__len__``.

    Example
    -------
    >>> class Squares(Dataset):
    ...     def __len__(self): return 4
    ...     def __getitem__(self, i): return i * i
    >>> [Squares()[i] for i in range(4)]
    [0, 1, 4, 9]
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


class TensorDataset(Dataset):
    """Samples are ``(a[i], b[i], ...)`` of arrays (or Tensors) with equal first dims.

    Raises
    ------
    ValueError
        If no array is given or their first dims differ.

    Example
    -------
    >>> import numpy as np
    >>> ds = TensorDataset(np.zeros((3, 2)), np.arange(3))
    >>> len(ds), ds[2][1]
    (3, np.int64(2))
    """

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset: give at least one array")
        arrays = tuple(np.asarray(getattr(t, "data", t)) for t in tensors)
        sizes = {a.shape[0] if a.ndim else None for a in arrays}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"TensorDataset: size mismatch between tensors: first dims "
                f"{[a.shape[:1] for a in arrays]}"
            )
        self.tensors = arrays

    def __getitem__(self, index: int) -> tuple:
        return tuple(a[index] for a in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order.

    Example
    -------
    >>> import numpy as np
    >>> s = Subset(TensorDataset(np.arange(5) * 10), [4, 0])
    >>> len(s), s[0][0]
    (2, np.int64(40))
    """

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(
    dataset: Any,
    lengths: Sequence[int | float],
    generator: np.random.Generator | int | None = None,
) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random :class:`Subset` s of ``lengths``.

    Fractions summing to 1 are accepted, as in PyTorch (the remainder is dealt one by
    one to the first subsets).

    Parameters
    ----------
    dataset : Dataset
    lengths : sequence of int or float
    generator : numpy.random.Generator or int seed, optional

    Raises
    ------
    ValueError
        If the lengths do not add up to the dataset's length (or the fractions to 1).

    Example
    -------
    >>> import numpy as np
    >>> a, b = random_split(TensorDataset(np.arange(10)), [0.7, 0.3], generator=0)
    >>> len(a), len(b), sorted(a.indices + b.indices) == list(range(10))
    (7, 3, True)
    """
    n = len(dataset)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1):
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: sum of input lengths {list(lengths)} does not equal the length "
            f"of the dataset ({n})"
        )
    rng = (
        generator
        if isinstance(generator, np.random.Generator)
        else np.random.default_rng(generator)
    )
    order = rng.permutation(n).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, order[start : start + int(length)]))
        start += int(length)
    return out


def default_collate(batch: list[Any]) -> Any:
    """Combine samples into a batch: arrays and numbers stacked on a new first axis;
    tuples, lists and dicts collated field by field; strings kept as a list.

    Example
    -------
    >>> import numpy as np
    >>> x, y = default_collate([(np.zeros(2), 1), (np.ones(2), 0)])
    >>> x.shape, y
    ((2, 2), array([1, 0]))
    """
    first = batch[0]
    if isinstance(first, tuple | list):
        return type(first)(default_collate(list(field)) for field in zip(*batch, strict=True))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, str | bytes):
        return list(batch)
    return np.stack([np.asarray(getattr(b, "data", b)) for b in batch])
