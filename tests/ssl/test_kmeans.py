"""Spherical k-means: both backends recover obvious clusters, agree, and handle the edge cases."""

from __future__ import annotations

import subprocess
import sys
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cloudkit.errors import MissingDependencyError
from cloudkit.ssl import kmeans
from cloudkit.ssl.kmeans import spherical_kmeans

BENCH = Path(__file__).resolve().parents[2] / "benches" / "bench_kmeans.py"
BACKENDS = ["torch", "faiss"]


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two partitions corrected for chance: 1.0 iff equal up to relabelling."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    pairs = sum(comb(int(v), 2) for v in table.ravel())
    rows = sum(comb(int(v), 2) for v in table.sum(axis=1))
    cols = sum(comb(int(v), 2) for v in table.sum(axis=0))
    expected = rows * cols / comb(len(a), 2)
    return (pairs - expected) / ((rows + cols) / 2 - expected)


@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """500 unit vectors in 16-d around 5 random centres (noise 0.05): truth, points, centres."""
    gen = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(5, 16, generator=gen), dim=1)
    truth = torch.arange(500) % 5
    x = F.normalize(centres[truth] + 0.05 * torch.randn(500, 16, generator=gen), dim=1)
    return truth, x, centres


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_separated_clusters(blobs, backend):
    truth, x, centres = blobs
    c, a = spherical_kmeans(x, 5, iterations=10, seed=0, backend=backend)
    assert c.shape == (5, 16) and c.dtype == torch.float32
    assert a.shape == (500,) and a.dtype == torch.int64
    torch.testing.assert_close(c.norm(dim=1), torch.ones(5))
    assert adjusted_rand_index(truth.numpy(), a.numpy()) == pytest.approx(1.0)
    # every true centre has a centroid right on it
    assert (centres @ c.T).max(dim=1).values.min() > 0.99


def test_backends_agree(blobs):
    _, x, _ = blobs
    _, a_torch = spherical_kmeans(x, 5, seed=3, backend="torch")
    c_faiss, a_faiss = spherical_kmeans(x, 5, seed=3, backend="faiss")
    assert adjusted_rand_index(a_torch.numpy(), a_faiss.numpy()) == pytest.approx(1.0)
    # faiss' assignments are those of its returned centroids
    assert torch.equal(a_faiss, (x @ c_faiss.T).argmax(dim=1))


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_deterministic_for_a_seed(blobs, backend):
    _, x, _ = blobs
    c1, a1 = spherical_kmeans(x[:100], 7, iterations=3, seed=5, backend=backend)
    c2, a2 = spherical_kmeans(x[:100], 7, iterations=3, seed=5, backend=backend)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)


def test_full_precision_under_autocast(blobs):
    _, x, _ = blobs
    expected = spherical_kmeans(x, 5, seed=2, backend="torch")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = spherical_kmeans(x, 5, seed=2, backend="torch")
    assert got[0].dtype == torch.float32
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_auto_on_cpu_is_the_measured_default(blobs):
    _, x, _ = blobs
    auto = spherical_kmeans(x, 5, seed=1, backend="auto")
    chosen = spherical_kmeans(x, 5, seed=1, backend=kmeans.CPU_DEFAULT)
    assert torch.equal(auto[0], chosen[0]) and torch.equal(auto[1], chosen[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_clusters_than_points(backend):
    with pytest.raises(ValueError, match=r"k=11 clusters needs at least 11 points, got 10"):
        spherical_kmeans(F.normalize(torch.randn(10, 4), dim=1), 11, backend=backend)


def test_bad_arguments():
    x = F.normalize(torch.randn(10, 4), dim=1)
    with pytest.raises(ValueError, match="unknown k-means backend"):
        spherical_kmeans(x, 2, backend="sklearn")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        spherical_kmeans(x[0], 2)
    with pytest.raises(ValueError, match="k >= 1"):
        spherical_kmeans(x, 0)


def _duplicates() -> torch.Tensor:
    """17 copies of one point and three others."""
    eye = torch.eye(4)
    return torch.cat([eye[:1].repeat(17, 1), eye[1:]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates_are_clustered(backend):
    x = _duplicates()
    for seed in range(3):
        c, a = spherical_kmeans(x, 4, iterations=5, seed=seed, backend=backend)
        # the four distinct points end up in four clusters, each centroid on its point
        assert len(set(a[16:].tolist())) == 4
        torch.testing.assert_close(c[a], x)


def test_seeding_picks_distinct_spread_points():
    x = F.normalize(torch.randn(300, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    for k in (5, 100):  # one centre a round, and several a round
        init = kmeans.kmeans_plus_plus(x, k, seed=0)
        assert init.shape == (k, 8)
        assert len({tuple(row) for row in init.tolist()}) == k
        assert torch.isin(init, x).all()
    # fewer distinct points than k: still k rows, the distinct points all among them
    init = kmeans.kmeans_plus_plus(_duplicates(), 6, seed=0)
    assert init.shape == (6, 4)
    assert torch.equal(torch.unique(init, dim=0), torch.eye(4).flip(0))


def test_torch_reseeds_empty_clusters():
    x = _duplicates()
    start = x[[0, 0, 0, 17]]  # three identical centroids: two clusters stay empty
    c, a = kmeans._torch_lloyd(x, start, iterations=3)
    assert torch.bincount(a, minlength=4).min() > 0
    torch.testing.assert_close(c.norm(dim=1), torch.ones(4))


def test_faiss_copes_with_empty_clusters():
    x = _duplicates()
    c, a = kmeans._faiss_lloyd(x, x[[0, 0, 0, 17]], iterations=3, seed=0)
    assert torch.isfinite(c).all()
    torch.testing.assert_close(c.norm(dim=1), torch.ones(4))
    assert a.min() >= 0 and a.max() < 4


def test_chunked_assignment_matches_dense(monkeypatch, blobs):
    _, x, _ = blobs
    centroids = x[:7]
    monkeypatch.setattr(kmeans, "_BLOCK_ELEMENTS", 7 * 64 + 3)  # 64-row blocks, ragged end
    best, index = kmeans._nearest(x, centroids)
    dense = x @ centroids.T
    assert torch.equal(index, dense.argmax(dim=1))
    torch.testing.assert_close(best, dense.max(dim=1).values)


def test_missing_faiss(monkeypatch):
    x = F.normalize(torch.randn(20, 4), dim=1)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(MissingDependencyError, match="faiss"):
        spherical_kmeans(x, 3, backend="faiss")
    expected = spherical_kmeans(x, 3, seed=2, backend="torch")
    got = spherical_kmeans(x, 3, seed=2, backend="auto")
    assert torch.equal(got[1], expected[1])


def test_benchmark_smoke():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "400", "--k", "8", "--iters", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "faiss:" in out.stdout and "torch:" in out.stdout and "ratio" in out.stdout
