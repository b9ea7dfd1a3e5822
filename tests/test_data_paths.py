"""A mistyped data directory is reported, never created, and never downloaded into.

``FASTBP_DATA=../shared/data/nope`` or ``--data-dir /nonexistent`` used to create an empty
directory, try the network and fail with a download error that never said the path may be
wrong. Every test here runs offline: the fetcher is replaced by one that records its calls.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from fastbp import data
from fastbp.data import load_mnist, write_idx

NAMES = [name for name, _ in data._MNIST_FILES]


def make_mnist(directory: Path, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(directory / (name + ".gz"), arr)
    return arrays


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """load_mnist keeps decompressed copies in the per-user cache: the tests' stay in theirs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture
def network(monkeypatch):
    """Record every fetch; serve nothing (each call fails like an unreachable mirror)."""
    calls: list[str] = []

    def fetch(url):
        calls.append(url)
        raise ConnectionError("offline test: no network")

    monkeypatch.setattr(data, "_fetch", fetch)
    monkeypatch.setattr(data, "MIRRORS", ["https://mirror.invalid/mnist/"])
    return calls


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """``tmp_path/shared/data/mnist`` holds the files, as ../shared/data/mnist does."""
    good = tmp_path / "shared" / "data" / "mnist"
    make_mnist(good)
    (tmp_path / "shared" / "data" / "other").mkdir()
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    return good


def _entries(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("how", ["env", "argument", "relative env"])
def test_missing_directory_is_named_and_not_created(tree, tmp_path, monkeypatch, network, how):
    typo = tree.parent / "nope"
    before = _entries(tmp_path)
    if how == "env":
        monkeypatch.setenv("FASTBP_DATA", str(typo))
        call = {}
    elif how == "argument":
        call = {"root": typo}
    else:  # FASTBP_DATA=../shared/data/nope, from a sibling working directory
        work = tmp_path / "work"
        work.mkdir()
        before = _entries(tmp_path)
        monkeypatch.chdir(work)
        monkeypatch.setenv("FASTBP_DATA", "../shared/data/nope")
        call = {}
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(**call)
    msg = str(info.value)
    assert "nope" in msg and "does not exist" in msg
    assert "$FASTBP_DATA" in msg if how != "argument" else "root argument" in msg
    assert f"Did you mean {tree}" in msg or "Did you mean ../shared/data/mnist" in msg
    assert "download=True" in msg
    assert _entries(tmp_path) == before  # nothing created, not even an empty directory
    assert network == []  # and no download was tried


def test_hint_without_any_mnist_nearby_names_the_nearest_parent(tmp_path, network):
    (tmp_path / "datasets").mkdir()
    typo = tmp_path / "datsets" / "mnist"
    with pytest.raises(FileNotFoundError, match="nearest existing parent is") as info:
        load_mnist(typo)
    msg = str(info.value)
    assert str(tmp_path) in msg and "datasets" in msg  # the closest sibling name
    assert not (tmp_path / "datsets").exists()
    assert network == []


def test_existing_directory_without_files_is_a_likely_mistake(tree, network):
    parent = tree.parent  # FASTBP_DATA=../shared/data instead of .../data/mnist
    before = _entries(parent)
    with pytest.raises(FileNotFoundError, match="holds none of the MNIST IDX files") as info:
        load_mnist(parent)
    assert f"Did you mean {tree}" in str(info.value)
    assert _entries(parent) == before and network == []


def test_download_false_on_missing_directory_hints_too(tree, network):
    with pytest.raises(FileNotFoundError, match=re.escape(f"Did you mean {tree}")):
        load_mnist(tree.parent / "mnsit", download=False)
    assert not (tree.parent / "mnsit").exists() and network == []


def test_a_file_is_not_a_data_directory(tree, network):
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_mnist(tree / (NAMES[0] + ".gz"))
    assert network == []


def test_correct_directory_still_loads(tree, monkeypatch, network):
    monkeypatch.setenv("FASTBP_DATA", str(tree))
    x_train, y_train, x_test, y_test = load_mnist()
    assert x_train.shape == (4, 28, 28) and y_test.dtype == np.uint8
    assert network == []


def test_explicit_download_creates_and_removes_on_failure(tmp_path, network):
    target = tmp_path / "new" / "deep" / "mnist"
    with pytest.raises(OSError, match="Could not download"):
        load_mnist(target, download=True)
    assert len(network) == 1  # asked for: it was tried
    assert not (tmp_path / "new").exists()  # every directory it created is gone again


def _serve(monkeypatch, src: Path) -> list[str]:
    """Serve ``src``'s files as the only mirror, with SHA256 matching them."""
    calls: list[str] = []
    for name in NAMES:
        raw = gzip.decompress((src / (name + ".gz")).read_bytes())
        monkeypatch.setitem(data.SHA256, name, hashlib.sha256(raw).hexdigest())

    def fetch(url):
        calls.append(url)
        return (src / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(data, "_fetch", fetch)
    monkeypatch.setattr(data, "MIRRORS", ["https://mirror.invalid/mnist/"])
    return calls


def test_explicit_download_into_new_directory(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    arrays = make_mnist(src)
    calls = _serve(monkeypatch, src)
    target = tmp_path / "new" / "mnist"
    out = load_mnist(target, download=True)
    np.testing.assert_array_equal(out[0], arrays[NAMES[0]])
    assert len(calls) == 4
    assert sorted(p.name for p in target.iterdir()) == sorted(n + ".gz" for n in NAMES)


def test_default_cache_downloads_by_default(tmp_path, monkeypatch):
    """No root and no $FASTBP_DATA: the per-user cache is created and filled, as before."""
    src = tmp_path / "mirror"
    arrays = make_mnist(src)
    calls = _serve(monkeypatch, src)
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    out = load_mnist()
    cache = tmp_path / "xdg" / "fastbp" / "mnist"
    np.testing.assert_array_equal(out[2], arrays[NAMES[2]])
    # The downloads, verified, and beside them their decompressed copies with stamps.
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        n + ext for n in NAMES for ext in (".gz", ".npy", ".npy.json")
    )
    assert len(calls) == 4
    out = load_mnist()  # cached: no second download
    assert len(calls) == 4
    np.testing.assert_array_equal(out[2], arrays[NAMES[2]])


def test_default_cache_failed_download_leaves_no_directory(tmp_path, monkeypatch, network):
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(OSError, match="Could not download"):
        load_mnist()
    assert network  # the default does download
    assert not (tmp_path / "xdg").exists()


def test_partial_directory_is_completed_by_default(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    make_mnist(src)
    calls = _serve(monkeypatch, src)
    target = tmp_path / "data"
    make_mnist(target)
    (target / (NAMES[3] + ".gz")).unlink()
    load_mnist(target)
    assert calls == [f"https://mirror.invalid/mnist/{NAMES[3]}.gz"]


def test_example_cli_reports_the_typo(tree, tmp_path, network):
    from fastbp.examples import mnist_mlp

    typo = tmp_path / "nonexistent"
    with pytest.raises(SystemExit) as info:
        mnist_mlp.main(["--data-dir", str(typo), "--epochs", "1", "--no-progress"])
    assert str(typo) in str(info.value) and "does not exist" in str(info.value)
    assert not typo.exists() and network == []
    assert os.path.isdir(tree)


def test_several_candidates_closest_name_first(tmp_path, network):
    make_mnist(tmp_path / "mnist-train")
    make_mnist(tmp_path / "fashion")
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "mnist-trian")
    msg = str(info.value)
    assert f"Did you mean {tmp_path / 'mnist-train'}?" in msg
    assert f"So do {tmp_path / 'fashion'}." in msg
    assert not (tmp_path / "mnist-trian").exists() and network == []
