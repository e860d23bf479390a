"""Batch assembly by one gather of rows (dejavid/data/packing.py, issue #17): bitwise the
batches of the per-video path for every storage precision, with and without
standardisation, padded and unpadded rows, one or two threads, and in DataLoader
workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavid.alignment.backend import packed_row_width
from dejavid.training.batching import epoch_batches, make_loader
from dejavid.data.dataset import Batch, TSEDataset, collate_packed
from dejavid.data.packing import RowSource, gather
from dejavid.config.settings import index_from_config
from helpers import make_config, seeded_video, write_dataset


def _dense(x: torch.Tensor) -> torch.Tensor:
    """A packed batch's whole storage rows [N, width] (the padding included)."""
    return x.as_strided((x.shape[0], x.stride(0)), (x.stride(0), 1))


def _assert_same_batch(got: Batch, want: Batch) -> None:
    assert got.x.shape == want.x.shape and got.x.stride() == want.x.stride()
    assert got.x.data_ptr() % 64 == 0
    assert torch.equal(_dense(got.x), _dense(want.x))  # bitwise, zero padding included
    for name in ("offsets", "labels", "rows"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b), name


def _rows(F: int, n: int = 23, seed: int = 0) -> RowSource:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, n).astype(np.int64)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    data = (rng.standard_normal((int(lengths.sum()), F)) * 3).astype(np.float32)
    return RowSource(data, "float32", starts, lengths)


def _stats(F: int) -> dict:
    g = torch.Generator().manual_seed(5)
    return {"mean": torch.randn(F, generator=g), "std": torch.rand(F, generator=g) + 0.05}


@pytest.mark.parametrize("F", [3, 130, 144])
@pytest.mark.parametrize("standardise", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_gather_equals_per_video_collate(F, standardise, parallel):
    rows = _rows(F)
    stats = _stats(F) if standardise else None
    pos = [7, 0, 22, 7, 13, 5]  # any order, repeats allowed
    x, offsets = gather(rows, pos, stats, parallel=parallel)
    items = []
    for p in pos:
        a, b = rows.starts[p], rows.starts[p] + rows.lengths[p]
        t = torch.from_numpy(rows.data[a:b])
        items.append(((t - stats["mean"]) / stats["std"] if standardise else t, 0, p))
    want = collate_packed(items)
    assert x.stride(0) == packed_row_width(F)
    _assert_same_batch(Batch(x, offsets, want.labels, want.rows), want)


def _half_rows(kind: str) -> tuple[RowSource, np.ndarray]:
    """Every 16-bit pattern once, as rows of 128 (width 128: no padding) or 131."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    F = 131
    data = np.zeros((len(bits) // F + 1, F), dtype=np.uint16)
    data.reshape(-1)[:len(bits)] = bits
    n = data.shape[0]
    return RowSource(data, kind, np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64)), data


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_half_storage_converts_every_bit_pattern_exactly(kind):
    rows, data = _half_rows(kind)
    x, _ = gather(rows, range(len(rows.starts)))
    if kind == "float16":
        want = torch.from_numpy(data.view(np.float16)).float()
    else:
        want = torch.from_numpy(data.view(np.int16)).view(torch.bfloat16).float()
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(x), nan)
    # bitwise for everything else: signed zeros, subnormals, normals, infinities
    assert torch.equal(x[~nan].view(torch.int32), want[~nan].view(torch.int32))


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_half_storage_standardised_as_the_per_video_path(kind):
    rng = np.random.default_rng(3)
    lengths = np.array([3, 1, 4, 2], dtype=np.int64)
    starts = np.array([0, 3, 4, 8], dtype=np.int64)
    F = 140
    values = torch.from_numpy(rng.standard_normal((10, F)).astype(np.float32))
    half = values.to(torch.float16 if kind == "float16" else torch.bfloat16)
    rows = RowSource(half.view(torch.int16).numpy().view(np.uint16), kind, starts, lengths)
    stats = _stats(F)
    x, offsets = gather(rows, [2, 0, 3], stats)
    want = collate_packed([((half[s:s + n].float() - stats["mean"]) / stats["std"], 0, 0)
                           for s, n in ((4, 4), (0, 3), (8, 2))])
    assert torch.equal(offsets, want.offsets)
    assert torch.equal(_dense(x), _dense(want.x))


@pytest.mark.parametrize("kind", ["float32", "float16", "bfloat16"])
def test_without_numba_the_same_batch(monkeypatch, kind):
    from dejavid.data import packing

    F = 131
    rows = _rows(F)
    if kind != "float32":
        t = torch.from_numpy(rows.data).to(getattr(torch, kind)).view(torch.int16)
        rows = RowSource(t.numpy().view(np.uint16), kind, rows.starts, rows.lengths)
    stats = _stats(F)
    pos = [3, 17, 0, 9]
    want = gather(rows, pos, stats)

    def no_numba(parallel):
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(packing, "_kernels", no_numba)
    got = gather(rows, pos, stats)
    assert torch.equal(got[1], want[1]) and torch.equal(_dense(got[0]), _dense(want[0]))


def test_bad_positions_and_rows_are_value_errors():
    rows = _rows(4, n=3)
    with pytest.raises(ValueError, match=r"positions must be in \[0, 3\)"):
        gather(rows, [0, 3])
    with pytest.raises(ValueError, match="non-empty"):
        gather(rows, [])
    with pytest.raises(ValueError, match="statistics are for 5 features"):
        gather(rows, [0], {"mean": torch.zeros(5), "std": torch.ones(5)})
    with pytest.raises(ValueError, match="float16 rows must be a 2-D uint16 array"):
        RowSource(rows.data, "float16", rows.starts, rows.lengths)
    with pytest.raises(ValueError, match="row kind must be one of"):
        RowSource(rows.data, "int8", rows.starts, rows.lengths)


# ------------------------------------------------------------------ through the dataset

def _videos(F: int) -> dict:
    videos = {}
    for k in range(17):
        split = "train" if k < 12 else "val"
        videos[f"v{k:02d}"] = (seeded_video(1 + (5 * k) % 9, k, f=F, scale=1 + k), k % 3, split)
    return videos


@pytest.mark.parametrize("F", [3, 130])
@pytest.mark.parametrize("source", ["files", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("standardise", [False, True])
def test_dataset_batches_equal_per_video_batches(tmp_path, F, source, standardise):
    store = source != "files"
    cfg = make_config(write_dataset(tmp_path, _videos(F)), store=store, feature_size=F,
                      store_dtype=source if store else "float32", standardize=standardise)
    index = index_from_config(cfg, progress=False)
    assert (index.feature_stats is not None) == standardise
    for split in ("train", "val"):
        for in_memory in (False, True):
            ds = TSEDataset(index, split, in_memory=in_memory, progress=False)
            for positions in epoch_batches(len(ds), 5, seed=1, epoch=2, shuffle=True):
                _assert_same_batch(ds.batch(positions), collate_packed([ds[n] for n in positions]))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("standardise", [False, True])
def test_store_on_device_batches_equal_per_video_batches(tmp_path, device, dtype, standardise):
    # "cpu" runs the code path of a GPU everywhere; "cuda" runs it on one
    cfg = make_config(write_dataset(tmp_path, _videos(130)), feature_size=130,
                      store_dtype=dtype, standardize=standardise)
    index = index_from_config(cfg, progress=False)
    ds = TSEDataset(index, "train", progress=False, device=device)
    assert ds.on_device and ds._row_source() is None
    for positions in epoch_batches(len(ds), 5, seed=3, epoch=1, shuffle=True):
        got = ds.batch(positions)
        assert got.x.device.type == device      # no trip through host memory
        # Batch.to moves a padded batch as its whole rows, so the layout is compared too
        _assert_same_batch(got.to("cpu"), collate_packed([ds[n] for n in positions]).to("cpu"))


def test_loader_batches_same_with_workers(tmp_path):
    cfg = make_config(write_dataset(tmp_path, _videos(130)), feature_size=130, standardize=True)
    index = index_from_config(cfg, progress=False)
    for in_memory in (False, True):
        ds = TSEDataset(index, "train", in_memory=in_memory, progress=False)
        batches = epoch_batches(len(ds), 4, seed=0, epoch=0, shuffle=True)
        alone = list(make_loader(ds, batches, num_workers=0))
        shared = list(make_loader(ds, batches, num_workers=2))
        assert len(alone) == len(shared) == len(batches)
        for a, b in zip(alone, shared):
            _assert_same_batch(b, a)


def test_in_memory_split_is_one_array(tmp_path):
    videos = _videos(3)
    index = index_from_config(make_config(write_dataset(tmp_path, videos), store=False,
                                          standardize=False), progress=False)
    ds = TSEDataset(index, "train", in_memory=True, progress=False)
    held = ds._row_source()
    assert held.data.shape == (int(index.lengths[index.rows("train")].sum()), 3)
    for n in range(len(ds)):
        x, _, k = ds[n]
        assert torch.equal(x, videos[index.ids[k]][0])


def test_item_as_stored_ignores_standardisation(tmp_path):
    videos = _videos(3)
    index = index_from_config(make_config(write_dataset(tmp_path, videos), standardize=True),
                              progress=False)
    stats = index.feature_stats
    for in_memory in (False, True):
        ds = TSEDataset(index, "val", in_memory=in_memory, progress=False)
        for n in range(len(ds)):
            raw, label, k = ds.item(n, standardized=False)
            src = videos[index.ids[k]][0]
            assert torch.equal(raw, src) and label == index.labels[k]
            assert torch.equal(ds[n][0], (src - stats["mean"]) / stats["std"])


@pytest.mark.parametrize("F", [3, 130])
def test_array_dataset_batches_equal_per_series_batches(F):
    from dejavid.data.arrays import ArrayDataset, index_from_arrays
    from dejavid.data.standardize import statistics

    series = [seeded_video(1 + (7 * k) % 11, k, f=F, scale=1 + k) for k in range(19)]
    labels = [k % 3 for k in range(19)]
    splits = ["train" if k % 4 else "val" for k in range(19)]
    index, tensors = index_from_arrays(series, labels, split=splits)
    index.feature_stats = statistics([tensors[k] for k in index.rows("train")])
    for split in ("train", "val"):
        ds = ArrayDataset(index, tensors, split)
        for positions in epoch_batches(len(ds), 4, seed=5, epoch=0, shuffle=True):
            _assert_same_batch(ds.batch(positions), collate_packed([ds[n] for n in positions]))
