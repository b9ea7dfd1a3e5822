"""What ``import fastbp`` loads: the layers a first training step does not use wait until used.

Each check runs in a fresh interpreter, since this one has long imported everything.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import fastbp

# Modules ``import fastbp`` leaves alone until something reaches for them.
LAZY_MODULES = [
    "fastbp.jit",
    "fastbp.jit.tracing",
    "fastbp.jit.compiler",
    "fastbp.viz",
    "fastbp.autograd",
    "fastbp.interop",
    "urllib.request",  # only a download needs it
]


def loaded_after(code: str) -> set[str]:
    """The modules in ``sys.modules`` of a fresh interpreter after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("code", ["import fastbp", "import fastbp.examples.mnist_cnn"])
def test_import_leaves_the_lazy_layers_unloaded(code):
    loaded = loaded_after(code)
    assert "fastbp.nn" in loaded and "fastbp.optim" in loaded  # the check itself can see
    assert sorted(loaded & set(LAZY_MODULES)) == []


def test_first_use_imports_the_module():
    loaded = loaded_after("import fastbp as fb\nfb.trace")
    assert {"fastbp.jit", "fastbp.jit.tracing"} <= loaded
    assert "fastbp.viz" not in loaded


def test_lazy_names_are_the_modules_objects():
    # The modules from sys.modules: ``from fastbp import gradcheck`` is the function.
    autograd, gradcheck, interop, jit, viz = (
        importlib.import_module(f"fastbp.{m}")
        for m in ("autograd", "gradcheck", "interop", "jit", "viz")
    )

    assert fastbp.trace is jit.trace
    assert fastbp.gradcheck is gradcheck.gradcheck
    assert fastbp.GradcheckError is gradcheck.GradcheckError
    assert fastbp.load_torch_state_dict is interop.load_torch_state_dict
    assert fastbp.to_torch_state_dict is interop.to_torch_state_dict
    assert fastbp.viz is viz and fastbp.autograd is autograd and fastbp.jit is jit
    for name in fastbp._LAZY:
        assert name in dir(fastbp)
        assert getattr(fastbp, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'fastbp' has no attribute 'no_such_name'"):
        fastbp.no_such_name  # noqa: B018
    assert not hasattr(fastbp, "no_such_name")


def test_gradcheck_stays_the_function_after_its_module_is_imported():
    # Its module and its function share the name: importing the module binds the module
    # on the package, unless the package's own import already did and rebound the name.
    code = (
        "import importlib, fastbp as fb\nimportlib.import_module('fastbp.gradcheck')\n"
        "print(type(fb.gradcheck).__name__, type(fb.GradcheckError).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["function", "type"]
