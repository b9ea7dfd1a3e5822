"""Tests for fastbp.data: IDX I/O, MNIST loading/downloading (offline) and DataLoader."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp.data as data
from fastbp.data import DataLoader, load_mnist, read_idx, write_idx

NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]

# Independent copy of the official digests, so a typo in fastbp.data.SHA256 is caught.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def make_mnist(directory: Path, n_train: int = 7, n_test: int = 3, gz: bool = True, seed: int = 0):
    """Write a tiny MNIST look-alike into ``directory``; return {name: array}."""
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(directory / (name + (".gz" if gz else "")), arr)
    return arrays


def decompressed_sha(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The per-user cache of every test: load_mnist keeps decompressed copies there."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "fastbp" / "mnist"


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A directory of tiny .gz MNIST files, with SHA256 overridden to match them."""
    src = tmp_path / "mirror"
    arrays = make_mnist(src)
    for name in NAMES:
        monkeypatch.setitem(data.SHA256, name, decompressed_sha(src / (name + ".gz")))
    return src, arrays


# --------------------------------------------------------------------------------------------
# IDX I/O
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8", ">i4", ">f8", "<i2"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / ("x" + suffix)
    write_idx(path, arr)
    out = read_idx(path)
    assert out.shape == arr.shape
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # must be writable
    assert no_temp_files(tmp_path)


def test_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "l", np.array([1, 2, 3], dtype=np.uint8))
    raw = (tmp_path / "l").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])
    assert int.from_bytes(raw[:4], "big") == 2049
    write_idx(tmp_path / "i", np.zeros((2, 28, 28), np.uint8))
    raw = (tmp_path / "i").read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2


def test_idx_gz_is_reproducible_and_gunzippable(tmp_path):
    arr = np.arange(100, dtype=np.uint8)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    write_idx(tmp_path / "1" / "a.gz", arr)
    write_idx(tmp_path / "2" / "a.gz", arr)
    blob = (tmp_path / "1" / "a.gz").read_bytes()
    assert blob == (tmp_path / "2" / "a.gz").read_bytes()
    assert b"a\x00" in blob[:20]  # the final name, not the temp name, is in the gzip header
    assert gzip.decompress(blob)[8:] == arr.tobytes()


def test_idx_empty_and_non_contiguous(tmp_path):
    write_idx(tmp_path / "e", np.zeros((0, 4), np.float32))
    assert read_idx(tmp_path / "e").shape == (0, 4)
    base = np.arange(24, dtype=np.int16).reshape(4, 6)
    write_idx(tmp_path / "t", base.T[::2])
    np.testing.assert_array_equal(read_idx(tmp_path / "t"), base.T[::2])


def test_write_idx_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match=r"int64.*astype"):
        write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))
    with pytest.raises(TypeError, match="bool"):
        write_idx(tmp_path / "x", np.ones(3, bool))
    with pytest.raises(ValueError, match=r"shape \(\)"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def test_write_idx_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.gz"
    write_idx(path, np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        write_idx(path, np.arange(50, dtype=np.uint8))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"expected at least 4 header bytes, got 0"),
        (b"\x00\x00", r"expected at least 4 header bytes, got 2"),
        (b"\x1f\x8b\x08\x01rest", r"bad IDX magic number"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), r"bad IDX magic number 1793"),
        (bytes([0, 0, 8, 0]), r"bad IDX magic number 2048"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0]), r"expected 16 header bytes for 3 dim"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), r"truncated.*expected 13 bytes, got 10"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), r"trailing data.*expected 9 bytes, got 10"),
        (bytes([0, 0, 0xC, 1, 0, 0, 0, 2, 0, 0, 0, 1]), r"int32.*expected 16 bytes, got 12"),
    ],
)
def test_read_idx_malformed(tmp_path, content, pattern):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    # The same bytes behind gzip give the same diagnosis.
    gz = tmp_path / "bad-idx.gz"
    gz.write_bytes(gzip.compress(content))
    with pytest.raises(ValueError, match=pattern):
        read_idx(gz)


def test_read_idx_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"corrupt or truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"corrupt or truncated gzip"):
        read_idx(path)


# --------------------------------------------------------------------------------------------
# load_mnist from local files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_tiny(tmp_path, gz):
    arrays = make_mnist(tmp_path, n_train=7, n_test=3, gz=gz)
    out = load_mnist(tmp_path, download=False)
    assert [a.shape for a in out] == [(7, 28, 28), (7,), (3, 28, 28), (3,)]
    assert all(a.dtype == np.uint8 for a in out)
    for name, arr in zip(NAMES, out, strict=True):
        np.testing.assert_array_equal(arr, arrays[name])


def test_load_mnist_prefers_gz_and_accepts_str_root(tmp_path):
    gz_arrays = make_mnist(tmp_path, n_train=4, gz=True, seed=1)
    make_mnist(tmp_path, n_train=9, gz=False, seed=2)
    x_train, y_train, _, _ = load_mnist(str(tmp_path), download=False)
    np.testing.assert_array_equal(x_train, gz_arrays[NAMES[0]])
    assert y_train.shape == (4,)


def test_load_mnist_mixed_compression(tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    # Replace one file by its uncompressed version.
    (tmp_path / (NAMES[3] + ".gz")).unlink()
    write_idx(tmp_path / NAMES[3], arrays[NAMES[3]])
    out = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(out[3], arrays[NAMES[3]])


def test_load_mnist_missing_without_download(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / (NAMES[2] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / (NAMES[2] + ".gz")) in msg
    assert str(tmp_path / NAMES[2]) in msg
    assert "FASTBP_DATA" in msg and "download=True" in msg


def test_load_mnist_wrong_magic(tmp_path):
    arrays = make_mnist(tmp_path)
    # A labels file stored under the images name.
    write_idx(tmp_path / (NAMES[0] + ".gz"), arrays[NAMES[1]])
    with pytest.raises(ValueError, match=r"bad magic number 2049 .*expected 2051") as info:
        load_mnist(tmp_path, download=False)
    assert NAMES[0] in str(info.value)
    # Right dimensionality but wrong element type is also rejected.
    make_mnist(tmp_path)
    write_idx(tmp_path / (NAMES[3] + ".gz"), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"expected 2049"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_truncated(tmp_path):
    make_mnist(tmp_path, gz=False)
    path = tmp_path / NAMES[0]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"expected 5504 bytes, got 5499") as info:
        load_mnist(tmp_path, download=False)
    assert str(path) in str(info.value)


def test_load_mnist_count_mismatch(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / (NAMES[3] + ".gz"), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"3 images but 4 labels"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_verify(source, tmp_path):
    src, _ = source
    load_mnist(src, download=False, verify=True)  # digests match the overridden SHA256
    data.SHA256[NAMES[1]] = "0" * 64  # restored by monkeypatch.setitem in the fixture
    load_mnist(src, download=False)  # no verification by default
    with pytest.raises(ValueError, match=r"SHA-256.*expected 0{64}") as info:
        load_mnist(src, download=False, verify=True)
    assert str(src / (NAMES[1] + ".gz")) in str(info.value)


# --------------------------------------------------------------------------------------------
# The decompressed cache
# --------------------------------------------------------------------------------------------


def count_reads(monkeypatch) -> list[str]:
    """Record the name of every IDX file load_mnist reads (decompresses) from its source."""
    reads: list[str] = []
    real = data._read_bytes

    def read(path):
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(data, "_read_bytes", read)
    return reads


def test_decompressed_cache_is_written_then_used(source, user_cache, monkeypatch):
    src, arrays = source
    first = load_mnist(src, download=False)
    assert sorted(p.name for p in user_cache.iterdir()) == sorted(
        f"{name}.npy{ext}" for name in NAMES for ext in ("", ".json")
    )
    assert no_temp_files(user_cache)
    reads = count_reads(monkeypatch)
    second = load_mnist(src, download=False)
    assert reads == []  # every array came from its .npy
    for name, a, b in zip(NAMES, first, second, strict=True):
        np.testing.assert_array_equal(b, arrays[name])
        assert type(b) is np.ndarray and b.dtype == np.uint8 and b.shape == a.shape
    # Writable like read_idx's arrays; the write stays in this process (copy-on-write).
    second[0][0, 0, 0] ^= 0xFF
    np.testing.assert_array_equal(load_mnist(src, download=False)[0], arrays[NAMES[0]])


def test_decompressed_cache_follows_the_source(source, user_cache, monkeypatch):
    src, _ = source
    load_mnist(src, download=False)
    # A new training-labels file (new content, size and digest) replaces the old one.
    labels = np.arange(7, dtype=np.uint8) % 10
    write_idx(src / (NAMES[1] + ".gz"), labels)
    monkeypatch.setitem(data.SHA256, NAMES[1], decompressed_sha(src / (NAMES[1] + ".gz")))
    reads = count_reads(monkeypatch)
    np.testing.assert_array_equal(load_mnist(src, download=False)[1], labels)
    assert reads == [NAMES[1] + ".gz"]
    # Only the modification time changes: the source is read again, the cache refreshed.
    path = src / (NAMES[2] + ".gz")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    load_mnist(src, download=False)
    assert reads == [NAMES[1] + ".gz", NAMES[2] + ".gz"]
    load_mnist(src, download=False)
    assert len(reads) == 2


def test_decompressed_cache_is_per_source_path(source, tmp_path, monkeypatch):
    src, arrays = source
    load_mnist(src, download=False)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in NAMES:
        (copy / (name + ".gz")).write_bytes((src / (name + ".gz")).read_bytes())
    reads = count_reads(monkeypatch)
    out = load_mnist(copy, download=False)
    assert len(reads) == 4  # the stamps name the first directory's files
    np.testing.assert_array_equal(out[0], arrays[NAMES[0]])


def test_only_official_content_is_cached(tmp_path, user_cache):
    make_mnist(tmp_path / "d")  # random files: their digests are not SHA256's
    load_mnist(tmp_path / "d", download=False)
    assert not user_cache.exists()


def test_uncompressed_sources_and_cache_false_write_nothing(source, tmp_path, user_cache):
    src, _ = source
    load_mnist(src, download=False, cache=False)
    assert not user_cache.exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in NAMES:
        (plain / name).write_bytes(gzip.decompress((src / (name + ".gz")).read_bytes()))
    load_mnist(plain, download=False)
    assert not user_cache.exists()


def test_verify_reads_the_sources_not_the_cache(source, monkeypatch):
    src, _ = source
    load_mnist(src, download=False)
    reads = count_reads(monkeypatch)
    load_mnist(src, download=False, verify=True)
    assert sorted(reads) == sorted(n + ".gz" for n in NAMES)
    data.SHA256[NAMES[0]] = "0" * 64  # restored by monkeypatch.setitem in the fixture
    with pytest.raises(ValueError, match=r"SHA-256.*expected 0{64}"):
        load_mnist(src, download=False, verify=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "stamp", "shape"])
def test_damaged_cache_falls_back_to_the_source(source, user_cache, monkeypatch, damage):
    src, arrays = source
    load_mnist(src, download=False)
    array_path = user_cache / (NAMES[0] + ".npy")
    stamp_path = user_cache / (NAMES[0] + ".npy.json")
    if damage == "truncate":
        array_path.write_bytes(array_path.read_bytes()[:-100])
    elif damage == "garbage":
        array_path.write_bytes(b"not a .npy file")
    elif damage == "stamp":
        stamp_path.write_text("[1, 2")
    else:  # a complete .npy of another shape than the stamp says
        np.save(array_path, arrays[NAMES[0]][:2])
    reads = count_reads(monkeypatch)
    np.testing.assert_array_equal(load_mnist(src, download=False)[0], arrays[NAMES[0]])
    assert reads == [NAMES[0] + ".gz"]
    load_mnist(src, download=False)  # rewritten: used again
    assert reads == [NAMES[0] + ".gz"]


def test_unwritable_cache_is_not_an_error(source, tmp_path, monkeypatch, caplog):
    src, arrays = source
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its fastbp/mnist cannot be created
    with caplog.at_level("INFO", logger="fastbp.data"):
        out = load_mnist(src, download=False)
    np.testing.assert_array_equal(out[2], arrays[NAMES[2]])
    assert "could not cache" in caplog.text


def test_real_mnist_from_the_decompressed_cache(monkeypatch):
    root = _real_mnist_dir()
    if root is None or not all((root / (n + ".gz")).is_file() for n in NAMES):
        pytest.skip("set FASTBP_DATA to a directory holding the four official MNIST .gz files")
    expected = load_mnist(root, download=False, verify=True)  # verified, then cached
    reads = count_reads(monkeypatch)
    out = load_mnist(root, download=False)
    assert reads == []
    for a, b in zip(expected, out, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Default root
# --------------------------------------------------------------------------------------------


def test_default_root_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data._default_root() == tmp_path / "d"
    arrays = make_mnist(tmp_path / "d")
    out = load_mnist(download=False)
    np.testing.assert_array_equal(out[0], arrays[NAMES[0]])


def test_default_root_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data._default_root() == tmp_path / "xdg" / "fastbp" / "mnist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "xdg" / "fastbp"))):
        load_mnist(download=False)


@pytest.mark.parametrize("xdg", [None, "", "relative/cache"])
def test_default_root_home(tmp_path, monkeypatch, xdg):
    monkeypatch.setenv("FASTBP_DATA", "")  # empty counts as unset
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data._default_root() == tmp_path / ".cache" / "fastbp" / "mnist"


# --------------------------------------------------------------------------------------------
# Downloading (offline: file:// mirrors and a monkeypatched fetcher)
# --------------------------------------------------------------------------------------------


def test_download_file_urls_first_mirror_missing(source, tmp_path, monkeypatch):
    src, arrays = source
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setattr(data, "MIRRORS", [empty.as_uri() + "/", src.as_uri()])
    cache = tmp_path / "cache" / "deep"  # created on demand
    out = load_mnist(cache, download=True)
    for name, arr in zip(NAMES, out, strict=True):
        np.testing.assert_array_equal(arr, arrays[name])
        assert (cache / (name + ".gz")).read_bytes() == (src / (name + ".gz")).read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)
    # Cached now: a second call must not touch the network.
    monkeypatch.setattr(data, "MIRRORS", [])
    load_mnist(cache, download=True)


def test_download_fetcher_order_and_only_missing(source, tmp_path, monkeypatch):
    src, _ = source
    calls = []

    def fetch(url):
        calls.append(url)
        if url.startswith("https://down.example/"):
            raise ConnectionError("mirror down (simulated)")
        return (src / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(data, "_fetch", fetch)
    monkeypatch.setattr(data, "MIRRORS", ["https://down.example/", "https://up.example/m"])
    cache = tmp_path / "cache"
    make_mnist(cache)
    (cache / (NAMES[1] + ".gz")).unlink()
    load_mnist(cache)
    assert calls == [
        f"https://down.example/{NAMES[1]}.gz",
        f"https://up.example/m/{NAMES[1]}.gz",
    ]


def test_download_skips_non_gzip_mirror(source, tmp_path, monkeypatch):
    src, _ = source
    bad = tmp_path / "html-mirror"
    bad.mkdir()
    for name in NAMES:
        (bad / (name + ".gz")).write_bytes(b"<html>404 Not Found</html>")
    monkeypatch.setattr(data, "MIRRORS", [bad.as_uri() + "/", src.as_uri() + "/"])
    cache = tmp_path / "cache"
    load_mnist(cache, download=True)
    assert all(
        (cache / (n + ".gz")).read_bytes() == (src / (n + ".gz")).read_bytes() for n in NAMES
    )


def test_download_checksum_mismatch_everywhere(source, tmp_path, monkeypatch):
    src, _ = source
    # Valid IDX files, wrong content.
    mirrors = [tmp_path / "m1", tmp_path / "m2"]
    make_mnist(mirrors[0], seed=98)
    make_mnist(mirrors[1], seed=99)
    monkeypatch.setattr(data, "MIRRORS", [m.as_uri() for m in mirrors])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"(?s)SHA-256.*SHA-256") as info:
        load_mnist(cache, download=True)
    msg = str(info.value)
    assert NAMES[0] in msg and str(cache) in msg and "FASTBP_DATA" in msg
    assert not cache.exists()  # neither a bad file, a temp file nor an empty directory


def test_download_all_mirrors_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MIRRORS", [(tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()])
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"(?s)Could not download.*/a/.*/b/") as info:
        load_mnist(cache, download=True)
    assert not isinstance(info.value, FileNotFoundError)  # distinct from download=False
    assert not cache.exists()  # the directory made for the download is removed again


def test_download_interrupted_write_leaves_nothing(source, tmp_path, monkeypatch):
    src, _ = source
    monkeypatch.setattr(data, "MIRRORS", [src.as_uri() + "/"])

    def interrupted(fd):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the file is being written

    monkeypatch.setattr(os, "fsync", interrupted)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        load_mnist(cache, download=True)
    assert not cache.exists()


# --------------------------------------------------------------------------------------------
# Real MNIST (only where FASTBP_DATA points at the official files)
# --------------------------------------------------------------------------------------------


def _real_mnist_dir() -> Path | None:
    env = os.environ.get("FASTBP_DATA")
    if not env:
        return None
    # Accept a path relative to the working directory or to the repository root.
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = (base / env).resolve()
        if all((candidate / (n + ".gz")).is_file() or (candidate / n).is_file() for n in NAMES):
            return candidate
    return None


def test_real_mnist():
    root = _real_mnist_dir()
    if root is None:
        pytest.skip("set FASTBP_DATA to a directory holding the four official MNIST files")
    assert data.SHA256 == OFFICIAL_SHA256
    x_train, y_train, x_test, y_test = load_mnist(root, download=False, verify=True)
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for arr in (x_train, y_train, x_test, y_test):
        assert arr.dtype == np.uint8
    for labels in (y_train, y_test):
        assert labels.min() == 0 and labels.max() == 9
        assert set(np.unique(labels)) == set(range(10))
    assert x_train.max() == 255 and x_test.max() == 255
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    for name in NAMES:
        path = root / (name + ".gz")
        path = path if path.is_file() else root / name
        assert decompressed_sha(path) == OFFICIAL_SHA256[name]


# --------------------------------------------------------------------------------------------
# DataLoader
# --------------------------------------------------------------------------------------------


def epoch(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_each_sample_once_and_aligned(shuffle):
    x = np.arange(103 * 2, dtype=np.float32).reshape(103, 2)
    y = np.arange(103) * 10
    loader = DataLoader(x, y, batch_size=10, shuffle=shuffle, seed=0)
    batches = epoch(loader)
    assert len(batches) == len(loader) == 11
    assert [len(yb) for _, yb in batches] == [10] * 10 + [3]
    ys = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(np.sort(ys), y)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0] / 2 * 10, yb)  # x and y stay paired
    if not shuffle:
        np.testing.assert_array_equal(ys, y)
    else:
        assert not np.array_equal(ys, y)


def test_loader_drop_last():
    loader = DataLoader(np.arange(25), np.arange(25), batch_size=10, seed=1, drop_last=True)
    assert len(loader) == 2
    batches = epoch(loader)
    assert [len(b[0]) for b in batches] == [10, 10]
    assert len(np.unique(np.concatenate([b[0] for b in batches]))) == 20
    exact = DataLoader(np.arange(20), np.arange(20), batch_size=10, drop_last=True)
    assert len(exact) == 2 and len(epoch(exact)) == 2


def test_loader_seed_reproducible_and_epochs_differ():
    x = np.arange(50)
    a = DataLoader(x, x, batch_size=8, seed=123)
    b = DataLoader(x, x, batch_size=8, seed=123)
    epochs_a = [np.concatenate([xb for xb, _ in a]) for _ in range(3)]
    epochs_b = [np.concatenate([xb for xb, _ in b]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b, strict=True):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs_a[0], epochs_a[1])
    assert not np.array_equal(epochs_a[1], epochs_a[2])
    c = DataLoader(x, x, batch_size=8, seed=124)
    assert not np.array_equal(np.concatenate([xb for xb, _ in c]), epochs_a[0])
    # Pinned: the order is a function of the seed alone (default_rng(seed).permutation).
    np.testing.assert_array_equal(epochs_a[0], np.random.default_rng(123).permutation(50))


def test_loader_order_fixed_at_iter_time():
    x = np.arange(30)
    loader = DataLoader(x, x, batch_size=4, seed=5)
    it1 = iter(loader)
    it2 = iter(loader)
    second = np.concatenate([xb for xb, _ in it2])
    first = np.concatenate([xb for xb, _ in it1])
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(first, rng.permutation(30))
    np.testing.assert_array_equal(second, rng.permutation(30))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    batch_size=st.integers(1, 25),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
)
def test_loader_len_property(n, batch_size, drop_last, shuffle):
    x = np.arange(n)
    loader = DataLoader(x, -x, batch_size, shuffle=shuffle, seed=0, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader)
    sizes = [len(xb) for xb, _ in batches]
    assert all(s == batch_size for s in sizes[:-1])
    seen = np.concatenate([xb for xb, _ in batches]) if batches else np.array([], int)
    assert len(np.unique(seen)) == len(seen)  # nothing repeated
    if drop_last:
        assert sizes == [batch_size] * (n // batch_size)
    else:
        assert sum(sizes) == n


def test_loader_multidim_and_lists():
    x = np.zeros((6, 3, 4))
    loader = DataLoader(x, [0, 1, 2, 3, 4, 5], batch_size=4, shuffle=False)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 4) and yb.tolist() == [0, 1, 2, 3]


def test_loader_errors():
    with pytest.raises(ValueError, match=r"x has 5 samples \(shape \(5, 2\)\) but y has 4"):
        DataLoader(np.zeros((5, 2)), np.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        DataLoader(np.zeros(5), np.zeros(5), batch_size=0)
    with pytest.raises(TypeError, match=r"batch_size must be an int, got float"):
        DataLoader(np.zeros(5), np.zeros(5), batch_size=2.5)
    with pytest.raises(TypeError, match=r"got bool"):
        DataLoader(np.zeros(5), np.zeros(5), batch_size=True)
    with pytest.raises(ValueError, match=r"leading sample axis"):
        DataLoader(np.float64(1.0), np.zeros(1), batch_size=1)
    assert len(DataLoader(np.zeros(5), np.zeros(5), batch_size=np.int64(2))) == 3
