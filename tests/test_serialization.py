"""Tests for fastbp.serialization: exact round trips, atomicity (incl. SIGKILL) and bad files."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp.serialization as serialization
from fastbp.serialization import load, save

SERIALIZATION_PY = Path(serialization.__file__).resolve()


def assert_same(a, b, where="state"):
    """Exact structural equality, including container and leaf types."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys/order differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"{where}: values differ"
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
        if isinstance(a, float):
            assert math.copysign(1, a) == math.copysign(1, b)


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def rich_state():
    rng = np.random.default_rng(0)
    return {
        "model": {
            "linear1.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "linear1.bias": np.zeros(4, np.float16),
            "embed": rng.integers(-5, 5, (3, 2)).astype(np.int8),
            "big": np.arange(10, dtype=np.uint64) * (2**60),
            "mask": np.array([True, False, True]),
            "cplx": np.array([1 + 2j, -3j], np.complex64),
            "scalar0d": np.array(3.5),
            "empty": np.zeros((0, 5), np.int32),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "strided": np.arange(20, dtype=np.int16)[::3],
            "bigendian": np.arange(4, dtype=">f8"),
            "text": np.array(["ab", "çé", ""]),
            "raw": np.array([b"x", b"yz"]),
            "when": np.array(["2024-01-01"], dtype="datetime64[D]"),
        },
        "optim": {
            "lr": 1e-3,
            "betas": (0.9, 0.999),
            "step": 12,
            "nesterov": False,
            "name": "adam",
            "schedule": None,
            "state": [
                {"m": np.ones(3), "v": np.full(3, 0.5), "t": np.int64(7)},
                {"m": np.ones(0), "v": None, "t": np.float32(2.5)},
            ],
            "history": [1, 2.0, True, "x", None, [[], ()], (1, (2, [3]))],
        },
        "epoch": np.int32(3),
        "flag": np.bool_(True),
        "huge_int": 2**100,
        "neg": -7,
        "specials": [float("nan"), float("inf"), -float("inf"), -0.0, 1e-310, 0.1 + 0.2],
        "unicode ключ / with.dots": "värde ✓",
        "__fastbp_manifest__": "a user key that collides with the manifest name",
        "a0": np.array([42]),  # collides with an internal member name
        "empty_dict": {},
        "empty_list": [],
        "empty_tuple": (),
    }


def test_round_trip_rich(tmp_path):
    state = rich_state()
    path = tmp_path / "ckpt.npz"
    assert save(state, path) is None
    out = load(path)
    assert_same(state, out)
    assert out["model"]["fortran"].flags.writeable
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_round_trip_str_path_no_suffix_added(tmp_path):
    path = str(tmp_path / "model.ckpt")
    save({"w": np.arange(3)}, path)
    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert_same(load(path), {"w": np.arange(3)})


def test_file_is_plain_npz(tmp_path):
    path = tmp_path / "c.npz"
    save({"w": np.arange(3.0)}, path)
    with np.load(path, allow_pickle=False) as npz:
        assert "__fastbp_manifest__" in npz.files
        manifest = json.loads(npz["__fastbp_manifest__"].tobytes())
    assert manifest["format"] == "fastbp-checkpoint" and manifest["version"] == 1


def test_overwrite_and_mutation_independence(tmp_path):
    path = tmp_path / "c.npz"
    w = np.arange(4.0)
    save({"w": w, "step": 1}, path)
    w[:] = -1  # mutating after save must not change the file
    save({"w": np.ones(2), "step": 2, "extra": "x"}, path)
    assert_same(load(path), {"w": np.ones(2), "step": 2, "extra": "x"})
    assert temp_files(tmp_path) == []


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.builds(
        lambda dt, n, seed: np.random.default_rng(seed).integers(0, 100, n).astype(dt),
        st.sampled_from(["u1", "i4", "i8", "f2", "f4", "f8", "?", "c16"]),
        st.integers(0, 5),
        st.integers(0, 100),
    )
    | st.builds(np.float32, st.floats(width=32))
    | st.builds(np.int16, st.integers(-(2**15), 2**15 - 1))
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None)
@given(state=st.dictionaries(st.text(max_size=6), trees, max_size=5))
def test_round_trip_property(state):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.npz"
        save(state, path)
        assert_same(state, load(path))


# --------------------------------------------------------------------------------------------
# Invalid input to save
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "pattern"),
    [
        ({"opt": {"x": {1, 2}}}, r"state\['opt'\]\['x'\] has unsupported type builtins.set"),
        ({"w": [np.zeros(1), object()]}, r"state\['w'\]\[1\] has unsupported type"),
        ({"w": np.array([1, None], dtype=object)}, r"dtype object.*pickle"),
        ({"d": {1: np.zeros(1)}}, r"key 1 of type int.*must be str"),
        ({"c": 1 + 2j}, r"unsupported type builtins.complex"),
        ({"b": b"bytes"}, r"unsupported type builtins.bytes"),
    ],
)
def test_save_rejects_unsupported(tmp_path, state, pattern):
    path = tmp_path / "c.npz"
    with pytest.raises(TypeError, match=pattern):
        save(state, path)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp file


def test_save_rejects_non_dict(tmp_path):
    with pytest.raises(TypeError, match=r"expected a state dict.*got list"):
        save([np.zeros(2)], tmp_path / "c.npz")


def test_save_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "c.npz"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        save({"a": 1}, target)
    assert str(target.parent) in str(info.value)


def test_failed_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save({"v": 1, "w": np.ones(3)}, path)
    before = path.read_bytes()
    real_savez = np.savez

    def savez_then_crash(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(f.tell() // 2)  # simulate a half-written file at the moment of failure
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(OSError, match="simulated"):
        save({"v": 2, "w": np.zeros(100_000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []
    assert load(path)["v"] == 1


# --------------------------------------------------------------------------------------------
# Bad files given to load
# --------------------------------------------------------------------------------------------


def test_load_missing(tmp_path):
    path = tmp_path / "missing.npz"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.3, 0.5, 0.9, 0.999])
def test_load_truncated(tmp_path, fraction):
    path = tmp_path / "c.npz"
    save({"w": np.arange(5000.0), "opt": {"lr": 0.1}}, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(ValueError, match=r"not a valid fastbp checkpoint.*[Rr]e-save") as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_bit_flip_detected_by_crc(tmp_path):
    path = tmp_path / "c.npz"
    save({"w": np.zeros(100_000)}, path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the array payload
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"truncated or damaged.*CRC"):
        load(path)


def fake_checkpoint(path: Path, manifest: dict | bytes, **arrays) -> None:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    np.savez(path, __fastbp_manifest__=np.frombuffer(raw, np.uint8), **arrays)


def write_foreign(path: Path, kind: str) -> None:
    ok = {"format": "fastbp-checkpoint", "version": 1}
    if kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind in ("npy", "pickle-npy"):
        arr = np.arange(3) if kind == "npy" else np.array([{"a": 1}], dtype=object)
        with path.open("wb") as f:  # a file object, so np.save does not append ".npy"
            np.save(f, arr, allow_pickle=True)
    elif kind == "foreign-npz":
        np.savez(path, weights=np.arange(3))
    elif kind == "bad-json":
        fake_checkpoint(path, b"{not json")
    elif kind == "other-format":
        fake_checkpoint(path, {"format": "something-else", "version": 1, "tree": {}})
    elif kind == "dangling-ref":
        fake_checkpoint(path, {**ok, "tree": {"t": "dict", "items": [["w", {"t": "array"}]]}})
    elif kind == "unknown-node":
        fake_checkpoint(path, {**ok, "tree": {"t": "dict", "items": [["w", {"t": "set"}]]}})
    elif kind == "wrong-leaf":
        fake_checkpoint(path, {**ok, "tree": {"t": "dict", "items": [["w", {"t": "int"}]]}})
    elif kind == "not-a-dict":
        fake_checkpoint(path, {**ok, "tree": {"t": "none"}})
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("text", r"not an \.npz \(zip\) archive \(starts with b'hello,'\)"),
        ("npy", r"plain \.npy"),
        ("pickle-npy", r"plain \.npy"),
        ("foreign-npz", r"no '__fastbp_manifest__' member.*np\.load"),
        ("bad-json", r"Expecting"),
        ("other-format", r"not a fastbp manifest"),
        ("dangling-ref", r"missing array member None"),
        ("unknown-node", r"unknown node type 'set'"),
        ("wrong-leaf", r"leaf of type int holds None"),
        ("not-a-dict", r"top level is not a dict"),
    ],
)
def test_load_foreign_files(tmp_path, kind, pattern):
    path = tmp_path / "c.npz"
    write_foreign(path, kind)
    with pytest.raises(ValueError, match=pattern) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and "not a valid fastbp checkpoint" in message


def test_load_future_version(tmp_path):
    path = tmp_path / "c.npz"
    fake_checkpoint(path, {"format": "fastbp-checkpoint", "version": 99, "tree": {}})
    with pytest.raises(ValueError, match=r"format version 99.*upgrade fastbp"):
        load(path)


# --------------------------------------------------------------------------------------------
# Crash safety: SIGKILL in the middle of a save
# --------------------------------------------------------------------------------------------

# The child imports serialization.py by file path, so it does not pay for (or depend on) the
# rest of the package being importable.
CHILD = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("fastbp_serialization", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def make_state(v):
        return {
            "version": v,
            "model": {"w": np.full(3_000_000, v, np.float64), "b": np.full(7, v, np.int32)},
            "optim": {"step": v, "m": [np.full(1000, v, np.float32), float(v)]},
        }

    v = int(sys.argv[3])
    while True:
        v += 1
        mod.save(make_state(v), sys.argv[2])
        print(v, flush=True)
    """
)


def check_complete(state, min_version):
    v = state["version"]
    assert isinstance(v, int) and v >= min_version
    assert state["optim"]["step"] == v and state["optim"]["m"][1] == float(v)
    assert state["model"]["w"].shape == (3_000_000,)
    for arr in (state["model"]["w"], state["model"]["b"], state["optim"]["m"][0]):
        assert (arr == v).all()
    return v


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_during_save_never_corrupts(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(
        {
            "version": 0,
            "model": {"w": np.zeros(3_000_000), "b": np.zeros(7, np.int32)},
            "optim": {"step": 0, "m": [np.zeros(1000, np.float32), 0.0]},
        },
        path,
    )
    version = 0
    killed_mid_write = 0
    # Varying delays after a temp file appears land the kill in different phases: while
    # np.savez writes, during fsync, and around the rename.
    for delay in (0.0, 0.002, 0.01, 0.03):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(SERIALIZATION_PY), str(path), str(version)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # Let one save complete, so a kill can leave either the old or a newer checkpoint.
            first = child.stdout.readline()
            if not first:
                pytest.fail(f"child exited early: {child.stderr.read().decode()}")
            deadline = time.monotonic() + 20
            while not temp_files(tmp_path):
                if child.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"child stopped saving: {child.stderr.read().decode()}")
                time.sleep(0.0005)
            time.sleep(delay)
            in_progress = bool(temp_files(tmp_path))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            completed = [int(v) for v in (first + child.stdout.read()).split()]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        killed_mid_write += in_progress
        assert child.returncode == -signal.SIGKILL
        # The target is the last save the child reported complete, or the one it was in the
        # middle of if the rename had already happened; never anything partial.
        version = check_complete(load(path), min_version=completed[-1])
        assert version in (completed[-1], completed[-1] + 1)
        # Only our (hidden) temp files may be left behind; SIGKILL gives no chance to clean up.
        for name in temp_files(tmp_path):
            assert name.startswith(".ckpt.npz.")
            (tmp_path / name).unlink()
        assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
    assert killed_mid_write >= 1, "no kill landed while a save was in progress"
