"""fastbp <-> PyTorch state dicts: names, Linear's transposed layout, buffers, errors."""

import numpy as np
import pytest

import fastbp as fb
from fastbp import nn

torch = pytest.importorskip("torch")
tnn = torch.nn


def pair():
    ours = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    theirs = tnn.Sequential(tnn.Linear(4, 5), tnn.ReLU(), tnn.Linear(5, 3))
    return ours, theirs


def test_torch_to_fastbp_same_outputs(tmp_path):
    ours, theirs = pair()
    fb.load_torch_state_dict(ours, theirs.state_dict())
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    want = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(fb.tensor(x)).data, want, rtol=1e-5, atol=1e-6)
    # through a torch.save file, and a checkpoint dict wrapping it
    path = tmp_path / "m.pt"
    torch.save({"state_dict": theirs.state_dict(), "epoch": 3}, path)
    other, _ = pair()
    fb.load_torch_state_dict(other, path)
    np.testing.assert_allclose(other(fb.tensor(x)).data, want, rtol=1e-5, atol=1e-6)


def test_fastbp_to_torch_same_outputs():
    ours, theirs = pair()
    theirs.load_state_dict(fb.to_torch_state_dict(ours))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        theirs(torch.from_numpy(x)).detach().numpy(), ours(fb.tensor(x)).data, rtol=1e-5, atol=1e-6
    )
    sd = fb.to_torch_state_dict(ours, as_numpy=True)
    assert sd["0.weight"].shape == (5, 4) and sd["0.weight"].flags.c_contiguous


def test_batchnorm_buffers_and_conv_round_trip():
    if not hasattr(nn, "BatchNorm1d") or not hasattr(nn, "Conv2d"):
        pytest.skip("BatchNorm1d/Conv2d not in this build")
    theirs = tnn.Sequential(
        tnn.Conv2d(2, 3, 3), tnn.Flatten(), tnn.Linear(12, 4), tnn.BatchNorm1d(4)
    )
    theirs.train()
    theirs(torch.randn(5, 2, 4, 4))  # moves the running statistics
    ours = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4))
    fb.load_torch_state_dict(ours, theirs.state_dict())
    back = fb.to_torch_state_dict(ours)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(back[k].numpy(), v.numpy(), rtol=1e-6, err_msg=k)
    theirs.eval()
    ours.eval()
    x = np.random.default_rng(2).normal(size=(2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(
        ours(fb.tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5
    )


def test_errors_name_the_key():
    ours, _ = pair()
    wrong = tnn.Sequential(tnn.Linear(4, 6), tnn.ReLU(), tnn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(6, 4\).*needs \(5, 4\)"):
        fb.load_torch_state_dict(ours, wrong.state_dict())
    sd = pair()[1].state_dict()
    sd["extra.bias"] = torch.zeros(1)
    del sd["2.bias"]
    with pytest.raises(
        KeyError, match=r"missing keys \['2.bias'\] and unexpected keys \['extra.bias'\]"
    ):
        fb.load_torch_state_dict(ours, sd)
    before = ours[0].weight.data.copy()
    sd = pair()[1].state_dict()
    del sd["2.bias"]
    fb.load_torch_state_dict(ours, sd, strict=False)
    assert not np.array_equal(before, ours[0].weight.data)
    with pytest.raises(TypeError, match="mapping"):
        fb.load_torch_state_dict(ours, 3)


def test_port_from_torch_example_losses_agree(capsys):
    from fastbp.examples import port_from_torch

    t, f = port_from_torch.run(steps=20, verbose=False)
    assert len(t) == len(f) == 20
    np.testing.assert_allclose(f, t, rtol=1e-10, atol=1e-12)
    assert t[-1] < t[0]  # it does train
    worst = port_from_torch.main(["--steps", "5"])
    out = capsys.readouterr().out
    assert "largest loss difference over 5 steps" in out and worst < 1e-10
