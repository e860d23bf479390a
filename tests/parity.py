"""Shared pieces of the backend-vs-reference parity tests (numba, CUDA)."""
import numpy as np
import torch

from dejavid.alignment import ref as align_ref
from dejavid.alignment.op import align, dba_accumulate

# (lengths of the samples of one batch, F, K, C): covers T in {1, 2, 7, 33, 150},
# F in {1, 3, 1459}, K in {1, 5, 64}, with mixed lengths inside a batch.
SHAPES = [
    ((1,), 3, 1, 2),
    ((1, 2, 7), 3, 5, 3),
    ((33, 1, 150, 2), 1, 5, 2),
    ((7, 33, 2), 1459, 64, 3),
    ((150, 33), 1459, 5, 2),
    ((2, 150, 1, 7), 3, 64, 4),
    ((1, 2, 7, 40, 9), 1, 9, 3),     # one feature: numba's cell-by-cell local cost
]
# K x C grid: the numba forward stacks G = 64 // K classes into one local-cost block
# (one class at K = 64, all 51 at K = 1, a short last group at C = 51), and the path
# kernels split the C * K centroid rows between threads.  Every batch has T = 1, 2, 7
# and 33; F = 1459 (rows padded to whole cache lines) where it matters, else 5.
GRID_SHAPES = [((1, 2, 7, 33), 1459 if (K, C) in ((8, 51), (8, 3), (64, 3)) else 5, K, C)
               for K in (1, 2, 8, 64) for C in (1, 2, 3, 51)]
MODES = ["hv", "hvd", "fixed"]
RTOL = {torch.float32: 2e-5, torch.float64: 1e-11}


def make_inputs(lengths, F, K, C, dtype=torch.float32, seed=0, device="cpu"):
    """Seeded (x [N, F], offsets [B + 1], mu, theta [C, K, F], upstream [B, C]) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lengths), F, generator=g, dtype=dtype)
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)
    mu = torch.randn(C, K, F, generator=g, dtype=dtype)
    theta = 0.5 * torch.randn(C, K, F, generator=g, dtype=dtype)
    upstream = torch.randn(len(lengths), C, generator=g, dtype=dtype)
    return tuple(t.to(device) for t in (x, offsets, mu, theta, upstream))


def assert_close(name, got, want, rtol):
    """Max difference relative to the magnitude of the reference, printed first."""
    assert got.shape == want.shape, name
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    diff = (got - want).abs().max().item() if got.numel() else 0.0
    scale = max(1.0, want.abs().max().item() if want.numel() else 0.0)
    print(f"{name}: max |diff| = {diff:.3e} (scale {scale:.3e})")
    assert diff <= rtol * scale, f"{name}: max diff {diff} > {rtol} * {scale}"


def perturbed_paths(x, offsets, mu, theta):
    """Paths of a perturbed snapshot, so they differ from the optimal ones."""
    g = torch.Generator().manual_seed(1)
    snap = mu + 0.5 * torch.randn(mu.shape, generator=g, dtype=mu.dtype).to(mu.device)
    return align_ref.align_forward_ref(x, offsets, snap, theta, "hvd")[1]


def shape_id(s):
    """Test id of a (lengths, F, K, C) shape."""
    return f"T{'-'.join(map(str, s[0]))}_F{s[1]}_K{s[2]}_C{s[3]}"


def compare_with_reference(backend, x, offsets, mu, theta, upstream, mode,
                           fixed_paths=perturbed_paths):
    """One forward + backward of ``backend`` against the reference's: paths equal, values
    and every gradient close (RTOL); ``fixed_paths`` makes the paths of mode 'fixed' from
    the inputs.  Returns the backend's results (as :func:`run_align`)."""
    fixed = fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    ref = run_align("ref", x, offsets, mu, theta, upstream, mode, fixed)
    fast = run_align(backend, x, offsets, mu, theta, upstream, mode, fixed)
    rtol = RTOL[x.dtype]
    assert fast[1].dtype == torch.int32 and fast[1].shape == ref[1].shape
    assert torch.equal(fast[1], ref[1]), "paths differ"
    assert fast[0].dtype == x.dtype
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"),
                          (fast[0], *fast[2:]), (ref[0], *ref[2:])):
        assert_close(name, a, b, rtol)
    return fast


def run_align(backend, x, offsets, mu, theta, upstream, mode, fixed_paths=None):
    """(dist, paths, grad_x, grad_mu, grad_theta) of one forward + backward through align()."""
    x, mu, theta = (t.detach().clone().requires_grad_() for t in (x, mu, theta))
    if mode == "fixed":
        dist, paths = align(x, offsets, mu, theta, paths=fixed_paths, backend=backend)
    else:
        dist, paths = align(x, offsets, mu, theta, step_pattern=mode, backend=backend)
    dist.backward(upstream)
    return dist.detach(), paths, x.grad, mu.grad, theta.grad


def non_contiguous(x, mu, theta, upstream):
    """The same values as strided views: transposed x and upstream, permuted mu, strided theta."""
    views = (x.t().contiguous().t(), mu.transpose(0, 1).contiguous().transpose(0, 1),
             torch.stack([theta, theta], -1)[..., 0], upstream.t().contiguous().t())
    assert not any(v.is_contiguous() for v in views[:3])
    return views


def check_strided_inputs(compare, run, mode, device="cpu"):
    """Strided views of the inputs must pass ``compare`` (against the reference) and give
    bitwise the results ``run`` gives for the contiguous inputs.

    compare(x, offsets, mu, theta, upstream, mode) -> results;
    run(x, offsets, mu, theta, upstream, mode, fixed_paths) -> results.
    """
    x, offsets, mu, theta, upstream = make_inputs((7, 33, 2), 40, 5, 3, device=device)
    x_nc, mu_nc, theta_nc, up_nc = non_contiguous(x, mu, theta, upstream)
    fast_nc = compare(x_nc, offsets, mu_nc, theta_nc, up_nc, mode)
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    fast = run(x, offsets, mu, theta, upstream, mode, fixed)
    for a, b in zip(fast_nc, fast):
        assert torch.equal(a, b)


def check_local_cost(local_cost, lengths, F, K, C, device="cpu"):
    """local_cost(x, offsets, mu, theta) -> D [B, C, K, Tmax] against the reference."""
    x, offsets, mu, theta, _ = make_inputs(lengths, F, K, C, device=device)
    ref = align_ref.local_cost_ref(x, offsets, mu, theta)
    fast = local_cost(x, offsets, mu, theta)
    for b, T in enumerate(lengths):
        assert_close(f"D[{b}]", fast[b, ..., :T], ref[b, ..., :T], RTOL[torch.float32])


def check_gpu_forward(pattern, **options):
    """On the GPU: align()'s free-path forward on cuda against the reference's, with
    ``options`` (band=..., open_ends=...): the same paths, distances within RTOL."""
    x, offsets, mu, theta, _ = make_inputs((7, 33, 2, 150), 40, 8, 3)
    d_ref, p_ref = align(x, offsets, mu, theta, pattern, backend="ref", **options)
    d, p = align(x.cuda(), offsets.cuda(), mu.cuda(), theta.cuda(), pattern, backend="cuda",
                 **options)
    assert torch.equal(p.cpu(), p_ref)
    assert_close("dist", d, d_ref, RTOL[torch.float32])


def gradcheck_align(backend, mode, device="cpu"):
    """float64 gradcheck of align() w.r.t. x, mu and theta on a tiny batch (lengths 3, 1, 4)."""
    x, offsets, mu, theta, _ = make_inputs((3, 1, 4), 2, 3, 2, dtype=torch.float64, seed=3,
                                           device=device)
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None

    def dist(x, mu, theta):
        if mode == "fixed":
            return align(x, offsets, mu, theta, paths=fixed, backend=backend)[0]
        return align(x, offsets, mu, theta, step_pattern=mode, backend=backend)[0]

    args = tuple(t.clone().requires_grad_() for t in (x, mu, theta))
    return torch.autograd.gradcheck(dist, args, eps=1e-6, atol=1e-6)


def check_dba_accumulate(backend, lengths, device="cpu"):
    """DBA sums and counts of ``backend`` against the reference along the reference's paths."""
    x, offsets, mu, theta, _ = make_inputs(lengths, 1459, 64, 1, device=device)
    paths = align_ref.align_forward_ref(x, offsets, mu, torch.zeros_like(theta), "hv")[1]
    s_ref, n_ref = dba_accumulate(x, offsets, paths, backend="ref")
    s_fast, n_fast = dba_accumulate(x, offsets, paths, backend=backend)
    assert s_fast.dtype == x.dtype and n_fast.dtype == n_ref.dtype
    assert torch.equal(n_fast, n_ref)
    assert_close("dba sums", s_fast, s_ref, RTOL[torch.float32])


# --------------------------------------------------------------------------- ties
# Inputs whose sums are exact in float32, so that every backend sees the same exact ties
# in the accumulated cost (where the tie rules of DESIGN 3.4 pick the path) and the same
# zero differences mu - x (where the gradient takes sign(0) = 0).  Random normal inputs
# never tie: a backend with a wrong tie rule or sign(0) passes every test on them.  Each
# kind is one way real data tie; theta is 0 (w = 1 exactly) throughout.
#   integers  small integer features, a third of them 0
#   float16   non-negative (post-ReLU) features stored as float16: many exact zeros
#   medoid    each class's centroid copied from steps of one sample (mu == x rows)
#   repeated  held frames: every sample step and centroid row repeated 1-4 times
TIE_KINDS = ("integers", "float16", "medoid", "repeated")
# (lengths, F, K, C): T from 1 to 33, K from 1 to 16, F = 1 and F = 130 (rows padded to
# cache lines), C = 2 (x read in place) and C = 3 (padded copies).
TIE_SHAPES = [
    ((1, 2, 5, 9, 17), 5, 8, 3),
    ((3, 33, 6, 1), 1, 3, 2),
    ((9, 17, 4), 130, 16, 3),
    ((12, 7, 25), 8, 1, 2),
    ((4, 4, 11), 3, 5, 3),
]


def _float16_features(shape, g):
    """ReLU'd normals stored as float16, below 1/4 set to 0 and capped at 2: steps of at
    least 2^-12 below 2^11, so the tests' sums stay exact in float32."""
    v = torch.randn(shape, generator=g).clamp(0, 2).half().float()
    return torch.where(v < 0.25, torch.zeros_like(v), v)


def _held(rows, n, g):
    """n rows made of ``rows`` [M, F] drawn at random, each held for 1-4 steps."""
    out = []
    while len(out) < n:
        row = rows[int(torch.randint(len(rows), (1,), generator=g))]
        out += [row] * int(torch.randint(1, 5, (1,), generator=g))
    return torch.stack(out[:n])


def tie_inputs(kind, lengths, F, K, C, dtype=torch.float32, seed=0):
    """Seeded (x [N, F], offsets [B + 1], mu, theta [C, K, F], upstream [B, C]) of ``kind``
    (see TIE_KINDS).  Checks that the local and accumulated costs are exact in ``dtype``
    (equal to float64), so ties are ties in every backend and summation order."""
    g = torch.Generator().manual_seed(seed)
    N = sum(lengths)
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)
    if kind == "integers":
        x = torch.randint(0, 3, (N, F), generator=g).float()
        mu = torch.randint(0, 3, (C, K, F), generator=g).float()
    elif kind == "float16":
        x, mu = _float16_features((N, F), g), _float16_features((C, K, F), g)
    elif kind == "medoid":
        x = _float16_features((N, F), g)
        mu = torch.empty(C, K, F)
        for c in range(C):
            b = c % len(lengths)
            steps = torch.linspace(0, lengths[b] - 1, K).round().long()
            mu[c] = x[offsets[b] + steps]
    elif kind == "repeated":
        pool = _float16_features((3, F), g)
        x = _held(pool, N, g)
        mu = torch.stack([_held(pool, K, g) for _ in range(C)])
    else:
        raise ValueError(f"kind must be one of {TIE_KINDS}, got {kind!r}")
    x, mu = x.to(dtype), mu.to(dtype)
    theta = torch.zeros(C, K, F, dtype=dtype)
    upstream = torch.randn(len(lengths), C, generator=g, dtype=dtype)
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    D64 = align_ref.local_cost_ref(x.double(), offsets, mu.double(), theta.double())
    assert torch.equal(D.double(), D64), "local costs not exact: the ties would not be ties"
    for pattern in ("hv", "hvd"):
        A = align_ref.accumulate_ref(D, pattern)
        assert torch.equal(A.double(), align_ref.accumulate_ref(D64, pattern)), pattern
    return x, offsets, mu, theta, upstream


def count_path_ties(x, offsets, mu, theta, mode):
    """How many cells (i > 0, j > 0) of the reference's paths met a tie when the path was
    traced back through them (hv: a = b; hvd: the minimum of a, b, g taken twice), so a
    test can check that its tie cases really exercise the tie rules."""
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    A = align_ref.accumulate_ref(D, mode)
    paths = align_ref.backtrack_ref(A, offsets[1:] - offsets[:-1], mode)
    ties = 0
    for (b, c, i), (lo, hi) in zip(np.ndindex(*paths.shape[:3]), paths.view(-1, 2).tolist()):
        for j in range(max(lo, 1), hi + 1) if i > 0 else ():
            a, left, g = A[b, c, i - 1, j], A[b, c, i, j - 1], A[b, c, i - 1, j - 1]
            if mode == "hv":
                ties += bool(a == left)
            else:
                m = min(a, left, g)
                ties += int(a == m) + int(left == m) + int(g == m) > 1
    return ties


def tie_fixed_paths(x, offsets, mu, theta):
    """Fixed paths for the tie cases: the reference's optimal hvd paths, which run
    through the zero-cost cells (mu == x) where the gradient takes sign(0)."""
    return align_ref.align_forward_ref(x, offsets, mu, theta, "hvd")[1]
