"""Open ends (``open_ends``, docs/DESIGN.md section 3.3.2): every sample matched in full to a
stretch of each centroid.

- the reference against an independent loop and hand-worked cases;
- numba (both forward kernels) and the host-emulated CUDA kernels against the reference:
  values, paths and every gradient, free and fixed paths;
- gradients (gradcheck), the fixed-path value of a fresh snapshot, DBA's sums and counts;
- where open ends reach: config, settings, the estimator, the centroid cache key, tuning.
"""
import numpy as np
import pytest
import torch

from dejavid.alignment import cuda as align_cuda
from dejavid.alignment import ref as align_ref
from dejavid.alignment.op import add_end_steps, align, dba_accumulate

from parity import RTOL, assert_close, check_gpu_forward, make_inputs, shape_id

# (lengths, F, K, C): T = 1 and 2 (a sample shorter than every centroid), K = 1, one
# feature (numba's cell-by-cell cost), 16+ classes of few features (numba's lanes).
SHAPES = [((1, 2, 7), 3, 5, 3), ((33, 1, 40, 2), 1, 5, 2), ((7, 33, 2), 20, 8, 3),
          ((2, 40, 1, 7), 3, 1, 4), ((2, 9, 1, 7, 13), 1, 12, 17), ((5, 3), 2, 9, 20)]


def _open_loop(x: np.ndarray, mu: np.ndarray, w: np.ndarray, hvd: bool) -> float:
    """The open-ended DP written directly, without end steps: a path may start at any
    (i, 0) (cost D[i, 0], or come down column 0 from the row above under 'hv' and 'hvd'),
    and it ends at the cheapest (i, T - 1)."""
    K, T = mu.shape[0], x.shape[0]
    D = np.array([[(w[i] * np.abs(mu[i] - x[j])).sum() for j in range(T)] for i in range(K)])
    A = np.full((K, T), np.inf)
    for j in range(T):
        for i in range(K):
            cands = [0.0] if j == 0 else []
            if j:
                cands.append(A[i, j - 1])
            if i:
                cands.append(A[i - 1, j])
                if hvd and j:
                    cands.append(A[i - 1, j - 1])
            A[i, j] = D[i, j] + min(cands)
    return float(A[:, T - 1].min())


def _by_brute_force(x: np.ndarray, mu: np.ndarray, w: np.ndarray, hvd: bool) -> float:
    """min over every stretch [a, b] of the closed alignment's distance (a second check)."""
    K = mu.shape[0]
    best = np.inf
    xo = torch.tensor([0, x.shape[0]])
    for a in range(K):
        for b in range(a, K):
            d, _ = align_ref.align_forward_ref(torch.from_numpy(x), xo,
                                               torch.from_numpy(mu[a:b + 1])[None],
                                               torch.from_numpy(np.log(w[a:b + 1]))[None],
                                               "hvd" if hvd else "hv")
            best = min(best, float(d))
    return best


def test_hand_worked_distances():
    mu = torch.tensor([[[0.0], [5.0], [10.0]]], dtype=torch.float64)   # C 1, K 3, F 1
    theta = torch.zeros_like(mu)

    def d(values, pattern="hv"):
        x = torch.tensor(values, dtype=torch.float64).view(-1, 1)
        return float(align(x, torch.tensor([0, len(values)]), mu, theta, pattern,
                           open_ends=True)[0])

    assert d([5.0]) == 0.0                        # the middle step alone
    assert d([5.0, 10.0], "hvd") == 0.0           # the last two, one diagonal step
    assert d([5.0, 10.0]) == 5.0                  # 'hv' has no diagonal: one cell off by 5
    assert d([0.0, 5.0, 10.0], "hvd") == 0.0      # all three (closed: also 0)
    assert d([7.0]) == 2.0                        # nearest step 5
    assert d([10.0, 0.0]) == 10.0                 # order kept: 10 then 0 costs one of them
    x = torch.tensor([[5.0]], dtype=torch.float64)
    closed = float(align(x, torch.tensor([0, 1]), mu, theta, "hv")[0])
    assert closed == 5.0 + 0.0 + 5.0              # a closed path visits every centroid step


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_reference_against_independent_loops(pattern):
    x, offsets, mu, theta, _ = make_inputs((1, 2, 5, 9), 2, 6, 3, dtype=torch.float64, seed=4)
    dist, _ = align(x, offsets, mu, theta, pattern, backend="ref", open_ends=True)
    w = theta.exp().numpy()
    for b in range(len(offsets) - 1):
        xb = x[offsets[b]:offsets[b + 1]].numpy()
        for c in range(mu.shape[0]):
            want = _open_loop(xb, mu[c].numpy(), w[c], pattern == "hvd")
            assert float(dist[b, c]) == pytest.approx(want, abs=1e-12)
            assert want == pytest.approx(_by_brute_force(xb, mu[c].numpy(), w[c],
                                                         pattern == "hvd"), abs=1e-12)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_open_distance_at_most_the_closed_one(pattern):
    x, offsets, mu, theta, _ = make_inputs((1, 2, 7, 33), 4, 8, 3, seed=2)
    closed, _ = align(x, offsets, mu, theta, pattern)
    opened, paths = align(x, offsets, mu, theta, pattern, open_ends=True)
    assert bool((opened <= closed + 1e-5).all()) and bool((opened < closed).any())
    # the paths are those of the samples with their two end steps
    lengths = offsets[1:] - offsets[:-1] + 2
    assert paths.shape == (4, 3, 8, 2)
    assert bool((paths[:, :, 0, 0] == 0).all())
    assert bool((paths[:, :, -1, 1] == (lengths - 1).view(-1, 1)).all())


def test_add_end_steps_layout_and_gradient():
    x = torch.arange(10.0).view(5, 2).requires_grad_()
    offsets = torch.tensor([0, 2, 5])
    xp, po = add_end_steps(x, offsets)
    assert po.tolist() == [0, 4, 9]
    assert xp.detach().tolist() == [[0, 0], [0, 1], [2, 3], [0, 0], [0, 0], [4, 5], [6, 7],
                                    [8, 9], [0, 0]]
    xp.sum().backward()
    assert torch.equal(x.grad, torch.ones(5, 2))


def _compare_forward(forward, inputs, pattern, **kw):
    """A backend's forward with open ends on the samples with their end steps against the
    reference's: the same paths, distances within RTOL."""
    x, offsets, mu, theta, _ = inputs
    xp, po = add_end_steps(x, offsets)
    d_ref, p_ref = align_ref.align_forward_ref(xp, po, mu, theta, pattern, open_ends=True)
    d, p = forward(xp, po, mu, theta, pattern, open_ends=True, **kw)
    assert torch.equal(p.cpu(), p_ref), "paths differ"
    assert_close("dist", d, d_ref, RTOL[x.dtype])


def _run(backend, x, offsets, mu, theta, up, pattern, paths=None):
    xr, mr, tr = (t.detach().clone().requires_grad_() for t in (x, mu, theta))
    dist, p = align(xr, offsets, mr, tr, pattern, paths=paths, backend=backend, open_ends=True)
    dist.backward(up)
    return dist.detach(), p, xr.grad, mr.grad, tr.grad


def _compare(backend, shape, pattern, dtype=torch.float32):
    x, offsets, mu, theta, up = make_inputs(*shape, dtype=dtype)
    ref = _run("ref", x, offsets, mu, theta, up, pattern)
    fast = _run(backend, x, offsets, mu, theta, up, pattern)
    assert torch.equal(fast[1].cpu(), ref[1]), "paths differ"
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"),
                          (fast[0], *fast[2:]), (ref[0], *ref[2:])):
        assert_close(name, a, b, RTOL[dtype])
    # along the given (fixed) paths of another snapshot
    snap = mu + 0.5 * torch.randn(mu.shape, generator=torch.Generator().manual_seed(1),
                                  dtype=mu.dtype)
    fixed = align(x, offsets, snap, theta, pattern, backend="ref", open_ends=True)[1]
    ref = _run("ref", x, offsets, mu, theta, up, pattern, fixed)
    fast = _run(backend, x, offsets, mu, theta, up, pattern, fixed)
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"),
                          (fast[0], *fast[2:]), (ref[0], *ref[2:])):
        assert_close("fixed " + name, a, b, RTOL[dtype])


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_numba_parity(shape, pattern):
    pytest.importorskip("numba")
    _compare("numba", shape, pattern)


@pytest.mark.parametrize("lanes", [False, True])
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_numba_both_forward_kernels(lanes, pattern):
    """The scalar kernel and the lanes (16 prototypes at once), whichever _use_lanes picks."""
    pytest.importorskip("numba")
    from dejavid.alignment import numba as align_numba
    _compare_forward(align_numba.align_forward_numba,
                     make_inputs((2, 9, 1, 7, 13), 1, 12, 17, seed=6), pattern, lanes=lanes)


def test_numba_parity_float64():
    pytest.importorskip("numba")
    _compare("numba", SHAPES[2], "hvd", torch.float64)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("shape", SHAPES[:4], ids=shape_id)
def test_emulated_cuda_parity(emulated, monkeypatch, shape, pattern):
    monkeypatch.setattr(align_cuda, "_C", emulated)
    _compare_forward(align_cuda.align_forward_cuda, make_inputs(*shape), pattern)


def test_emulated_cuda_open_ends_across_chunks(emulated, monkeypatch):
    """The zero end columns follow each chunk's own samples when the forward is chunked."""
    monkeypatch.setattr(align_cuda, "_C", emulated)
    monkeypatch.setattr(align_cuda, "COST_BUDGET", 3 * 5 * 40)
    _compare_forward(align_cuda.align_forward_cuda, make_inputs((7, 33, 2, 40), 4, 5, 3), "hv")


@pytest.mark.skipif(not (torch.cuda.is_available() and align_cuda.available()),
                    reason="needs a CUDA device and the built extension "
                           "(pip install --no-build-isolation ./kernel_setup)")
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_gpu_cuda_open_ends_match_reference(pattern):
    """On the GPU (kernel_setup/gpu_check.sh runs it): open ends through align()."""
    check_gpu_forward(pattern, open_ends=True)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_gradcheck_with_open_ends(pattern):
    x, offsets, mu, theta, _ = make_inputs((3, 1, 6), 2, 4, 2, dtype=torch.float64, seed=3)

    def dist(x, mu, theta):
        return align(x, offsets, mu, theta, pattern, open_ends=True, backend="ref")[0]

    args = tuple(t.clone().requires_grad_() for t in (x, mu, theta))
    assert torch.autograd.gradcheck(dist, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["ref", "numba"])
def test_fresh_snapshot_gives_the_free_path_values(backend):
    x, offsets, mu, theta, _ = make_inputs((1, 2, 7, 33), 3, 8, 3, dtype=torch.float64)
    free, paths = align(x, offsets, mu, theta, "hvd", backend=backend, open_ends=True)
    along, _ = align(x, offsets, mu.clone().requires_grad_(), theta, "hvd", paths=paths,
                     backend=backend, open_ends=True)
    assert torch.allclose(along.detach(), free, rtol=0, atol=1e-12)


def test_band_and_open_ends_refused():
    x, offsets, mu, theta, _ = make_inputs((3, 4), 2, 3, 2)
    with pytest.raises(ValueError, match="band"):
        align(x, offsets, mu, theta, "hv", band=0.1, open_ends=True)
    from dejavid.config.settings import CentroidSpec, ModelSpec
    with pytest.raises(ValueError, match="band"):
        ModelSpec(band=0.1, open_ends=True)
    with pytest.raises(ValueError, match="band"):
        CentroidSpec(band=0.1, open_ends=True)
    with pytest.raises(ValueError, match="open_ends"):
        ModelSpec(open_ends="yes")


def test_dba_sums_and_counts_leave_out_the_end_steps():
    # one centroid 0, 5, 10; sample [5, 10] takes steps 1-2; sample [0] takes step 0 only
    mu = torch.tensor([[0.0], [5.0], [10.0]], dtype=torch.float64)
    x = torch.tensor([[5.0], [10.0], [0.0]], dtype=torch.float64)
    offsets = torch.tensor([0, 2, 3])
    _, paths = align(x, offsets, mu[None], torch.zeros_like(mu)[None], "hvd", open_ends=True)
    for backend in ("ref", "numba"):
        sums, counts = dba_accumulate(x, offsets, paths, backend=backend, open_ends=True)
        assert counts.tolist() == [1, 1, 1] and sums.flatten().tolist() == [0.0, 5.0, 10.0]
    # a centroid step that no sample step reaches has count 0, and DBA keeps its value
    from dejavid.model.centroids import dba
    out = dba([torch.tensor([[5.0]], dtype=torch.float64)], mu, "hv", 5, open_ends=True)
    assert out.flatten().tolist() == [0.0, 5.0, 10.0]
    out = dba([torch.tensor([[6.0], [9.0]], dtype=torch.float64),
               torch.tensor([[4.0], [11.0]], dtype=torch.float64)], mu, "hvd", 5,
              open_ends=True)
    assert out.flatten().tolist() == [0.0, 5.0, 10.0]    # (6 + 4) / 2, (9 + 11) / 2


def test_config_estimator_and_cache_key(tmp_path):
    from dejavid import DejaVidClassifier
    from dejavid.config.files import load_config
    from dejavid.config.settings import settings_from_config
    from dejavid.model.centroids import centroid_meta
    cfg = load_config(None, ["--open_ends", "true", "--num_timesteps", "4", "--num_epochs",
                             "2"])
    s = settings_from_config(cfg)
    assert s.model.open_ends and s.centroids.open_ends
    with pytest.raises(ValueError, match="open_ends"):
        load_config(None, ["--open_ends", "true", "--band", "0.1"])

    class Index:
        num_classes, feature_size = 2, 1

        def fingerprint(self, split):
            return "f"
    plain = load_config(None, ["--num_timesteps", "4", "--num_epochs", "2"])
    assert "open_ends" not in centroid_meta(Index(), "train",
                                            settings_from_config(plain).centroids)
    assert centroid_meta(Index(), "train", s.centroids)["open_ends"] is True
    # the estimator: the parameter reaches the layer; clone keeps it
    from sklearn.base import clone
    g = np.random.default_rng(0)
    X = [np.concatenate([np.zeros(int(g.integers(2, 6))), np.array([3.0, 5.0, 3.0]) * (c + 1),
                         np.zeros(int(g.integers(2, 6)))])[:, None] + 0.1 * g.standard_normal(
        (1, 1)) for c in (0, 1) for _ in range(6)]
    y = np.array([0] * 6 + [1] * 6)
    clf = DejaVidClassifier(open_ends=True, num_timesteps=6, num_epochs=3, backend="ref",
                            tune="none")
    assert clone(clf).get_params()["open_ends"] is True
    clf.fit(X, y)
    assert clf.model_.open_ends and clf.score(X, y) >= 0.5
    with pytest.raises(ValueError, match="band"):
        DejaVidClassifier(open_ends=True, band=0.1).fit(X, y)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_knn_with_open_ends_matches_brute_force(tmp_path, monkeypatch, pattern):
    """1-NN DTW with open ends (the benchmark's column): each evaluation series against
    every stretch of each training series, grouped and chunked as the closed form."""
    from helpers import make_config, write_dataset
    from dejavid.baselines import classic
    from dejavid.config.settings import index_from_config
    from dejavid.data.dataset import TSEDataset
    g = torch.Generator().manual_seed(3)
    videos = {}
    for n in range(30):
        T = 1 if n in (2, 24) else int(torch.randint(2, 9, (1,), generator=g))
        videos[f"v{n:02d}"] = (torch.randn(T, 2, generator=g), n % 3,
                               "train" if n < 20 else "val")
    cfg = make_config(write_dataset(tmp_path, videos), num_timesteps=4, in_memory=True)
    index = index_from_config(cfg, progress=False)
    train, val = TSEDataset(index, "train", True, False), TSEDataset(index, "val", True, False)
    monkeypatch.setattr(classic, "_KNN_BLOCK", 20)
    dist, _ = classic.knn_class_distances(train, val, pattern, batch_size=3, open_ends=True)
    want = np.full((len(val), 3), np.inf)
    for e in range(len(val)):
        xe = val[e][0].double().numpy()
        for t in range(len(train)):
            xt, yt, _ = train[t]
            xt = xt.double().numpy()
            want[e, yt] = min(want[e, yt], _open_loop(xe, xt, np.ones_like(xt), pattern == "hvd"))
    np.testing.assert_allclose(dist.numpy(), want, rtol=1e-5, atol=1e-5)
    closed, _ = classic.knn_class_distances(train, val, pattern, batch_size=3)
    assert bool((dist <= closed + 1e-5).all())


def test_alignment_plot_with_open_ends(tmp_path, monkeypatch):
    """The plot draws the path on the video's own steps (columns 0 .. T - 1), not on the
    end steps the alignment added."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes
    from dejavid.report import plots
    drawn = []
    real_plot = Axes.plot

    def plot(self, xs, ys, *a, **k):
        drawn.append((np.asarray(xs), np.asarray(ys)))
        return real_plot(self, xs, ys, *a, **k)
    monkeypatch.setattr(Axes, "plot", plot)
    mu = torch.tensor([[[0.0], [5.0], [10.0], [15.0]], [[3.0], [3.0], [3.0], [3.0]]])
    x = torch.tensor([[5.0], [10.0]])                      # a stretch of class 0's centroid
    out = plots.alignment_path(x, 0, {"open": (mu, torch.zeros_like(mu))}, "hvd",
                               tmp_path / "a.png", ["a", "b"], open_ends=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jj, ii = drawn[0]
    assert jj.tolist() == [0, 1] and ii.tolist() == [1, 2]   # steps 5 and 10 of the centroid


def test_fit_trains_it_and_the_checkpoint_keeps_it(tmp_path):
    """fit with open ends on crops of two patterns: the centroids come from open-ended DBA
    (cached under their own key), the checkpoint rebuilds a layer that aligns with open
    ends, and its distances are those of align(open_ends=True) with the trained weights."""
    from dejavid.config.settings import CentroidSpec, LoopSpec, ModelSpec, TrainSettings
    from dejavid.data.arrays import ArrayDataset, index_from_arrays
    from dejavid.training.run import fit, model_from_checkpoint
    g = np.random.default_rng(1)
    patterns = [np.sin(np.linspace(0, 6, 40)), np.sign(np.sin(np.linspace(0, 6, 40)))]
    X, y = [], []
    for c, p in enumerate(patterns):
        for _ in range(8):
            a = int(g.integers(0, 20))
            b = a + int(g.integers(10, 40 - a + 1))
            X.append((p[a:b] + 0.05 * g.standard_normal(b - a))[:, None].astype(np.float32))
            y.append(c)
    index, tensors = index_from_arrays(X, np.array(y))
    ds = ArrayDataset(index, tensors)
    settings = TrainSettings(centroids=CentroidSpec(num_timesteps=16, dba_max_iter=5,
                                                    backend="ref", open_ends=True),
                             model=ModelSpec(backend="ref", open_ends=True, step_pattern="hv"),
                             loop=LoopSpec(num_epochs=3, batch_size=4))
    res = fit(ds, ds, settings, device="cpu", run_dir=tmp_path / "run",
              cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    assert res.model.open_ends
    cached = [torch.load(f, weights_only=False)["meta"] for f in (tmp_path / "cache").glob(
        "centroids_*.pt") if not f.name.endswith(".partial.pt")]
    assert [m.get("open_ends") for m in cached] == [True]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    rebuilt = model_from_checkpoint(ckpt, settings.model)
    assert rebuilt.open_ends
    batch = ds.batch(list(range(len(ds))))
    with torch.no_grad():
        d = rebuilt(batch.x, batch.offsets)
        want, _ = align(batch.x, batch.offsets, rebuilt.mu, rebuilt.theta, "hv",
                        backend="ref", open_ends=True)
        assert torch.equal(d, want)
        closed = model_from_checkpoint(ckpt, ModelSpec(backend="ref"))(batch.x, batch.offsets)
        assert bool((d <= closed + 1e-5).all()) and bool((d < closed).any())
