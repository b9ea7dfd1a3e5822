"""Issue 15: batch/layer/group norm and dropout vs PyTorch, gradcheck, modules, train/eval."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn

SHAPES = [(4, 3), (3, 2, 5), (2, 3, 4, 3), (1, 2, 3, 3)]


def _t(a):
    return fb.tensor(a, requires_grad=True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch_and_gradcheck(shape, training, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    c = shape[1]
    x = rng.standard_normal(shape)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    ours_stats, their_stats = (rm.copy(), rv.copy()), (torch.tensor(rm), torch.tensor(rv))
    args = (w, b) if affine else (None, None)
    ours = [_t(x)] + ([_t(w), _t(b)] if affine else [])
    theirs = [torch.tensor(a, requires_grad=True) for a in [x] + ([w, b] if affine else [])]
    if training and shape[0] * int(np.prod(shape[2:])) == 1:
        pytest.skip("one value per channel")
    y = F.batch_norm(ours[0], *ours_stats, *(ours[1:] or args), training=training, momentum=0.3)
    ty = torch.nn.functional.batch_norm(theirs[0], *their_stats, *(theirs[1:] or args),
                                        training=training, momentum=0.3)  # fmt: skip
    dy = rng.standard_normal(shape)
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), atol=1e-9)
    np.testing.assert_allclose(ours_stats[0], their_stats[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(ours_stats[1], their_stats[1].numpy(), atol=1e-12)
    stats = (rm.copy(), rv.copy())
    assert fb.gradcheck(
        lambda *a: F.batch_norm(a[0], *stats, *(a[1:] or args), training=training), ours
    )


def test_batch_norm_module_train_eval_buffers_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ours, theirs = nn.BatchNorm2d(3, momentum=None), torch.nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32) * 3 + 1
        np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(),
                                   atol=1e-5)  # fmt: skip
    sd = ours.state_dict()
    np.testing.assert_allclose(sd["running_mean"], theirs.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(sd["running_var"], theirs.running_var.numpy(), atol=1e-5)
    assert int(sd["num_batches_tracked"]) == 3
    ours.eval(), theirs.eval()
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(), atol=1e-5)
    fresh = nn.BatchNorm2d(3)
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(fresh.eval()(x).data, ours(x).data)
    no_stats = nn.BatchNorm1d(3, track_running_stats=False, affine=False).eval()
    assert set(no_stats.state_dict()) == set()
    x1 = rng.standard_normal((5, 3))
    ref = torch.nn.BatchNorm1d(3, track_running_stats=False, affine=False).eval()
    np.testing.assert_allclose(no_stats(x1).data, ref(torch.tensor(x1)).numpy(), atol=1e-10)


@pytest.mark.parametrize("shape, normalized", [((3, 4), 4), ((2, 3, 4), (3, 4)), ((1, 5), (5,))])
def test_layer_norm_matches_torch_and_gradcheck(shape, normalized):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    nshape = (normalized,) if isinstance(normalized, int) else normalized
    arrays = [rng.standard_normal(shape), rng.standard_normal(nshape), rng.standard_normal(nshape)]
    ours = [_t(a) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.layer_norm(ours[0], normalized, ours[1], ours[2])
    ty = torch.nn.functional.layer_norm(theirs[0], nshape, theirs[1], theirs[2])
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), atol=1e-9)
    assert fb.gradcheck(lambda *a: F.layer_norm(a[0], normalized, a[1], a[2]), ours)


@pytest.mark.parametrize("shape, groups", [((2, 4, 3), 2), ((2, 6, 2, 2), 3), ((1, 3, 5), 1),
                                           ((2, 4, 3, 3), 4)])  # fmt: skip
def test_group_norm_matches_torch_and_gradcheck(shape, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    c = shape[1]
    arrays = [rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)]
    ours = [_t(a) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.group_norm(ours[0], groups, ours[1], ours[2])
    ty = torch.nn.functional.group_norm(theirs[0], groups, theirs[1], theirs[2])
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), atol=1e-9)
    assert fb.gradcheck(lambda *a: F.group_norm(a[0], groups, a[1], a[2]), ours)
    ref = torch.nn.GroupNorm(groups, c).double()
    want = ref(torch.tensor(arrays[0])).detach().numpy()
    got = nn.GroupNorm(groups, c, dtype=np.float64)(arrays[0]).data
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: F.batch_norm(np.zeros(3), np.zeros(3), np.ones(3)), "at least 2 dimensions"),
        (lambda: F.batch_norm(np.zeros((2, 3)), np.zeros(2), np.ones(3)), r"running_mean must"),
        (lambda: F.batch_norm(np.zeros((1, 3)), None, None, training=True), "more than 1 value"),
        (lambda: F.layer_norm(np.zeros((2, 3)), 4), "normalized_shape"),
        (lambda: F.group_norm(np.zeros((2, 3, 4)), 2), "divisible by num_groups=2"),
        (lambda: F.dropout(np.zeros(3), 1.5), "between 0 and 1"),
        (lambda: F.dropout2d(np.zeros((2, 3)), 0.5), "dropout2d: expected a 4-D"),
        (lambda: nn.BatchNorm2d(3)(np.zeros((2, 3))), "BatchNorm2d: expected a 4-D"),
        (lambda: nn.GroupNorm(2, 3), "GroupNorm"),
    ],
)
def test_norm_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_dropout_scaling_seed_and_gradient():
    fb.manual_seed(7)
    x = fb.tensor(np.ones((200, 50)), requires_grad=True)
    y = F.dropout(x, 0.3)
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.02
    y.sum().backward()
    np.testing.assert_allclose(x.grad, kept / 0.7)  # the gradient flows through kept units only
    fb.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.3).data, y.data)  # seeded: same mask
    assert F.dropout(x, 0.3, training=False) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0)
    np.testing.assert_array_equal(F.dropout(x, 0.0).data, x.data)


def test_dropout2d_drops_whole_channels_and_modules_follow_train_eval():
    fb.manual_seed(0)
    y = F.dropout2d(np.ones((8, 16, 3, 3)), 0.5).data
    per_channel = y.reshape(8, 16, -1)
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    assert F.dropout2d(np.ones((4, 3, 3)), 0.5).shape == (4, 3, 3)  # unbatched
    net = nn.Sequential(nn.Dropout(0.5), nn.Dropout2d(0.5))
    x = fb.ones(2, 4, 3, 3)
    assert (net(x).data == 0).any()
    net.eval()
    np.testing.assert_array_equal(net(x).data, x.data)
    assert "p=0.5" in repr(net)
