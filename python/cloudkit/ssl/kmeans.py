"""Spherical k-means (cosine similarity, unit-norm centroids) with a faiss or a torch backend.

Both backends start from the same centroids, drawn with ``seed`` by k-means++ seeding (in at
most ``_INIT_ROUNDS`` rounds, on a subsample of at most ``max(8k, 16384)`` points), then run
``iterations`` Lloyd rounds (assign every point to its most similar centroid, move each
centroid to the normalised mean of its points) and assign the points to the final centroids,
so the returned assignments always match the returned centroids. With the same start the two
backends give the same partition, up to floating-point ties and empty-cluster handling.
Seeding costs about one assignment pass; plain random starts (faiss' default) often put two
centroids in one true cluster, and Lloyd rounds never move them apart.

Backends
    "faiss"  faiss.Clustering with an exact inner-product index (a GPU index on the tensor's
             CUDA device when the faiss build has GPU support). Empty clusters: faiss splits
             a large cluster.
    "torch"  plain torch on the tensor's device: assignment by chunked matmul (never an N x k
             one-hot), centroid sums by ``index_add_``. Empty clusters are re-seeded with the
             points farthest from their centroid.
    "auto"   CUDA tensor: faiss on the GPU if available, else torch on the GPU. CPU tensor: the
             backend measured faster on CPU by ``benches/bench_kmeans.py`` (``CPU_DEFAULT``).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cloudkit.errors import MissingDependencyError

BACKENDS = ("auto", "faiss", "torch")

# benches/bench_kmeans.py --repeat 3 (100,000 x 128 unit vectors, k = 3000, 10 iterations) on the
# 2-core AMD EPYC dev machine, shared (load ~3): faiss 5.95 s (11.8 s CPU), torch 9.87 s
# (16.1 s CPU); interleaved reruns: faiss 6.4-8.6 s, torch 7.9-10.5 s. torch's MKL sgemm reaches
# ~95 GFLOP/s there against ~150 for faiss' OpenBLAS search, hence faiss on CPU.
CPU_DEFAULT = "faiss"

# k-means++ seeding: at most this many rounds (k <= rounds: exact k-means++), on a subsample
_INIT_ROUNDS = 32
_INIT_MIN_POINTS = 16384
_INIT_POINTS_PER_CLUSTER = 8

# elements of one (chunk, k) similarity block in the torch backend (32 MiB of float32)
_BLOCK_ELEMENTS = 1 << 23


def spherical_kmeans(
    x: Tensor, k: int, *, iterations: int = 10, seed: int = 0, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Cluster unit vectors ``x`` (N, D) into ``k`` clusters on the hypersphere.

    Returns ``(centroids, assignments)``: (k, D) float32 unit vectors and (N,) int64 cluster
    indices, both on ``x``'s device. The same ``x``, ``k``, ``seed`` and backend give the same
    result on the same hardware.
    """
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"k-means needs a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k-means needs k >= 1 clusters, got k={k}")
    if k > n:
        raise ValueError(
            f"k-means with k={k} clusters needs at least {k} points, got {n}: "
            "use fewer clusters (prototypes) or more data"
        )
    if iterations < 1:
        raise ValueError(f"k-means needs at least 1 iteration, got {iterations}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}: expected one of {BACKENDS}")
    x = x.detach().float().contiguous()
    if backend == "auto":
        backend = _auto_backend(x)
    # full precision even if called under autocast: nearest centroids need float32 similarities
    no_autocast = (
        torch.autocast(x.device.type, enabled=False)
        if x.device.type in ("cpu", "cuda")
        else contextlib.nullcontext()
    )
    with torch.no_grad(), no_autocast:
        init = kmeans_plus_plus(x, k, seed=seed)
        if backend == "faiss":
            return _faiss_lloyd(x, init, iterations, seed)
        return _torch_lloyd(x, init, iterations)


@torch.no_grad()
def kmeans_plus_plus(x: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """``k`` distinct rows of unit vectors ``x`` (N, D) spread out by k-means++ seeding.

    Each round draws new centres with probability proportional to the squared distance to the
    nearest centre chosen so far (``2 - 2 cos``). For k up to ``_INIT_ROUNDS`` one centre a
    round, the best of ``2 + ln k`` draws (greedy k-means++); beyond, several centres a round
    so that there are at most ``_INIT_ROUNDS`` rounds. Works on a random subsample of
    ``max(8k, 16384)`` points. Once every point sits on a centre (fewer distinct points than k)
    the rest are drawn uniformly among the points not chosen yet.
    """
    n = x.shape[0]
    generator = torch.Generator().manual_seed(seed)
    m = min(n, max(_INIT_POINTS_PER_CLUSTER * k, _INIT_MIN_POINTS))
    sample = torch.randperm(n, generator=generator)[:m].to(x.device)
    xs = x[sample]
    chosen = torch.zeros(m, dtype=torch.bool, device=x.device)
    first = int(torch.randint(m, (1,), generator=generator))
    picks = [torch.tensor([first], device=x.device)]
    chosen[first] = True
    dist2 = (2.0 - 2.0 * (xs @ xs[first])).clamp_(min=0.0)
    dist2[chosen] = 0.0
    per_round = max(1, -(-(k - 1) // (_INIT_ROUNDS - 1)))
    trials = 2 + int(math.log(k))
    count = 1
    while count < k:
        # a vanishing weight on unchosen points: they are drawn only once no distance is left
        weights = dist2.cpu().double() + (~chosen).cpu().double() * 1e-300
        if per_round == 1:
            # greedy k-means++: of a few candidates keep the one that lowers the potential most
            draws = min(trials, m - count)
            candidates = torch.multinomial(weights, draws, generator=generator).to(x.device)
            d2 = torch.minimum(dist2.unsqueeze(1), 2.0 - 2.0 * (xs @ xs[candidates].T))
            best = int(d2.clamp_(min=0.0).sum(dim=0).argmin())
            new = candidates[best : best + 1]
            dist2 = d2[:, best].contiguous()
        else:
            b = min(per_round, k - count)
            new = torch.multinomial(weights, b, generator=generator).to(x.device)
            sims = (xs @ xs[new].T).max(dim=1).values
            dist2 = torch.minimum(dist2, (2.0 - 2.0 * sims).clamp_(min=0.0))
        picks.append(new)
        chosen[new] = True
        dist2[chosen] = 0.0
        count += new.numel()
    return xs[torch.cat(picks)].clone()


def _auto_backend(x: Tensor) -> str:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch"
    if x.is_cuda:
        return "faiss" if _faiss_gpus() > 0 else "torch"
    return CPU_DEFAULT if x.device.type == "cpu" else "torch"


def _faiss_gpus() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "k-means backend 'faiss' needs the faiss package: pip install faiss-gpu "
            "(or faiss-cpu), or use backend 'torch'"
        ) from exc
    return faiss


def _faiss_lloyd(x: Tensor, init: Tensor, iterations: int, seed: int) -> tuple[Tensor, Tensor]:
    faiss = _import_faiss()
    n, d = x.shape
    k = init.shape[0]
    data = x.cpu().numpy()
    params = faiss.ClusteringParameters()
    params.niter = iterations
    params.spherical = True
    params.seed = seed
    params.min_points_per_centroid = 1  # no warning for few points per cluster
    params.max_points_per_centroid = -(-n // k)  # never subsample: cluster every point
    params.verbose = False
    if x.is_cuda and _faiss_gpus() > 0:
        resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = x.device.index if x.device.index is not None else 0
        index = faiss.GpuIndexFlatIP(resources, d, config)
    else:
        index = faiss.IndexFlatIP(d)
    clustering = faiss.Clustering(d, k, params)
    faiss.copy_array_to_vector(init.cpu().numpy().ravel(), clustering.centroids)
    clustering.train(data, index)  # leaves the final centroids in the index
    centroids = faiss.vector_to_array(clustering.centroids).reshape(k, d)
    _, labels = index.search(data, 1)
    return (
        torch.from_numpy(centroids).to(x.device),
        torch.from_numpy(labels[:, 0].astype("int64")).to(x.device),
    )


def _torch_lloyd(x: Tensor, init: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    k = init.shape[0]
    centroids = init.clone()
    for _ in range(iterations):
        best, assignments = _nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assignments, x)
        counts = torch.bincount(assignments, minlength=k)
        centroids = F.normalize(sums, dim=1)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            # re-seed each empty cluster with one of the points worst served by its centroid
            farthest = torch.topk(best, empty.numel(), largest=False).indices
            centroids[empty] = x[farthest]
    _, assignments = _nearest(x, centroids)
    return centroids, assignments


def _nearest(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Best cosine similarity (N,) and index (N,) of each row's nearest centroid."""
    n, k = x.shape[0], centroids.shape[0]
    chunk = max(1, _BLOCK_ELEMENTS // k)
    best = torch.empty(n, dtype=x.dtype, device=x.device)
    index = torch.empty(n, dtype=torch.long, device=x.device)
    centroids_t = centroids.T.contiguous()
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        torch.max(x[start:stop] @ centroids_t, dim=1, out=(best[start:stop], index[start:stop]))
    return best, index
