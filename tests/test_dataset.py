"""Dataset, TensorDataset, Subset, random_split and the map-style DataLoader."""

import numpy as np
import pytest

from fastbp.data import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split


class Pairs(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.full(2, i, dtype=np.float32), "y": i % 3}


def test_tensor_dataset_and_subset():
    ds = TensorDataset(np.arange(5), np.arange(5) * 2)
    assert len(ds) == 5 and ds[3] == (3, 6)
    sub = Subset(ds, [4, 1])
    assert len(sub) == 2 and sub[1] == (1, 2)
    with pytest.raises(ValueError, match="size mismatch"):
        TensorDataset(np.zeros(3), np.zeros(4))


def test_random_split_lengths_fractions_and_seed():
    ds = TensorDataset(np.arange(11))
    a, b = random_split(ds, [0.5, 0.5], generator=np.random.default_rng(0))
    assert (len(a), len(b)) == (6, 5)
    assert sorted(a.indices + b.indices) == list(range(11))
    c, _ = random_split(ds, [6, 5], generator=np.random.default_rng(0))
    assert c.indices == a.indices  # same generator state, same split
    with pytest.raises(ValueError, match="does not equal"):
        random_split(ds, [3, 3])


@pytest.mark.parametrize("drop_last", [False, True])
def test_map_style_loader_matches_torch_order(drop_last):
    torch = pytest.importorskip("torch")
    ours = [b["y"].tolist() for b in DataLoader(Pairs(), batch_size=3, drop_last=drop_last)]
    theirs = [
        b["y"].tolist()
        for b in torch.utils.data.DataLoader(Pairs(), batch_size=3, drop_last=drop_last)
    ]
    assert ours == theirs
    assert len(DataLoader(Pairs(), batch_size=3, drop_last=drop_last)) == len(theirs)


def test_shuffle_seeded_sampler_batch_sampler_collate():
    a = [b["y"].tolist() for b in DataLoader(Pairs(), batch_size=2, shuffle=True, seed=3)]
    b = [b["y"].tolist() for b in DataLoader(Pairs(), batch_size=2, shuffle=True, seed=3)]
    assert a == b
    seen = [
        int(x[0])
        for batch in DataLoader(Pairs(), batch_size=2, shuffle=True, seed=3)
        for x in batch["x"]
    ]
    assert sorted(seen) == list(range(7))
    batches = list(DataLoader(Pairs(), sampler=[6, 0, 3], batch_size=2))
    assert [b["x"][:, 0].tolist() for b in batches] == [[6.0, 0.0], [3.0]]
    batches = list(DataLoader(Pairs(), batch_sampler=[[1, 2], [5]]))
    assert [b["y"].tolist() for b in batches] == [[1, 2], [2]]
    out = list(DataLoader(Pairs(), batch_size=4, collate_fn=lambda s: len(s)))
    assert out == [4, 3]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Pairs(), sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Pairs(), batch_sampler=[[0]], batch_size=2)
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(3)


def test_tensor_dataset_takes_the_array_fast_path():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    fast = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=1)
    arrays = DataLoader(x, y, batch_size=4, shuffle=True, seed=1)
    assert fast._fast
    for (xa, ya), (xb, yb) in zip(fast, arrays, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_default_collate():
    x, y = default_collate([(np.zeros(2), 1), (np.ones(2), 0)])
    assert x.shape == (2, 2) and y.tolist() == [1, 0]
    assert default_collate(["a", "b"]) == ["a", "b"]
