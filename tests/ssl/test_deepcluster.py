"""DeepCluster v2: first-epoch loss, clustering the bank, learning, and the bank under DDP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from cloudkit.models.encoder import Encoder
from cloudkit.ssl.deepcluster import DeepClusterV2
from cloudkit.ssl.kmeans import spherical_kmeans

BANDS = ("B02", "B03")
N = 12


def tiny_model(num_samples: int = N, prototypes=(3, 4)) -> DeepClusterV2:
    torch.manual_seed(0)
    return DeepClusterV2(BANDS, num_samples, n_prototypes=prototypes, dim=16, temperature=0.1)


def images(n: int = N, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, len(BANDS), 32, 32, generator=gen)
    return x, (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def one_epoch(model: DeepClusterV2, view1, view2, indices, batch: int = 4) -> list[float]:
    losses = []
    for start in range(0, len(indices), batch):
        sl = slice(start, start + batch)
        loss, _ = model(view1[sl], view2[sl], indices[sl])
        losses.append(loss.item())
    return losses


def test_first_epoch_loss_is_a_zero_that_backpropagates():
    model = tiny_model()
    v1, v2 = images(4)
    loss, z1 = model(v1, v2, torch.arange(4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    grads = [p.grad for p in model.projector.parameters()]
    assert all(g is not None and not g.any() for g in grads)
    assert z1.shape == (4, 16) and not z1.requires_grad
    torch.testing.assert_close(z1.norm(dim=1), torch.ones(4))
    assert isinstance(model.encoder(), Encoder) and model.encoder() is model.backbone


def test_bank_filled_by_index_in_training_only():
    model = tiny_model()
    v1, v2 = images(4)
    _, z1 = model(v1, v2, torch.tensor([7, 2, 9, 0]))
    assert model.bank.filled.nonzero().flatten().tolist() == [0, 2, 7, 9]
    torch.testing.assert_close(model.bank.embeddings[7], z1[0])
    model.eval()
    with torch.no_grad():
        model(v1, v2, torch.tensor([1, 3, 4, 5]))
    assert int(model.bank.filled.sum()) == 4


def test_cluster_sets_prototypes_and_assignments():
    model = tiny_model()
    v1, v2 = images()
    filled = torch.tensor([0, 1, 2, 3, 5, 6, 8, 9])  # rows 4, 7, 10, 11 never seen
    with torch.no_grad():
        one_epoch(model, v1[filled], v2[filled], filled)
    bank = F.normalize(model.bank.embeddings[filled], dim=1)
    stats = model.cluster(seed=3, backend="torch")
    assert set(stats) == {"head0", "head1"}
    for h, k in enumerate((3, 4)):
        centroids, assigned = spherical_kmeans(bank, k, seed=3 + h, backend="torch")
        assert torch.equal(model.prototypes.heads[h].weight, centroids)
        assert torch.equal(model.assignments[h, filled], assigned)
        assert stats[f"head{h}"]["size_max"] <= len(filled)
    unseen = torch.tensor([4, 7, 10, 11])
    assert (model.assignments[:, unseen] == -1).all()
    assert not model.bank.filled.any()  # consumed: the next epoch fills it again
    # the loss now has targets
    loss, _ = model(v1[:4], v2[:4], torch.arange(4))
    assert loss.item() > 0 and math.isfinite(loss.item())


def test_loss_decreases_after_clustering():
    model = tiny_model()
    v1, v2 = images()
    indices = torch.arange(N)
    with torch.no_grad():
        one_epoch(model, v1, v2, indices)
    model.cluster(seed=0, backend="torch")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for _ in range(6):
        loss, _ = model(v1[:6], v2[:6], indices[:6])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_more_prototypes_than_samples():
    with pytest.raises(ValueError, match=r"5 prototypes but only 4 samples.*--prototypes"):
        DeepClusterV2(BANDS, 4, n_prototypes=(2, 5), dim=8)


def test_cluster_needs_enough_embeddings():
    model = tiny_model(prototypes=(3, 6))
    with pytest.raises(ValueError, match="bank is empty"):
        model.cluster(seed=0)
    v1, v2 = images(4)
    with torch.no_grad():
        model(v1, v2, torch.arange(4))
    with pytest.raises(ValueError, match=r"6 prototypes but only 4 embeddings.*--prototypes"):
        model.cluster(seed=0)


# ---------------------------------------------------------------- DDP: 2 gloo ranks on CPU


def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = tiny_model(num_samples=8, prototypes=(3, 4))
        # default DDP: buffers broadcast from rank 0 at every forward, except the bank
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.05)
        v1, v2 = images(8)
        mine = torch.arange(rank, 8, world)  # each index seen by one rank only
        for step in range(2):
            idx = mine[2 * step : 2 * step + 2]
            loss, z1 = ddp(v1[idx], v2[idx], idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        # the bank holds this rank's rows only
        assert model.bank.filled.nonzero().flatten().tolist() == mine.tolist()
        local = model.bank.embeddings.clone()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        expected_bank = F.normalize(sum(parts), dim=1)  # rows are disjoint

        stats = model.cluster(seed=0, backend="torch")
        assert set(stats) == {"head0", "head1"}
        assert (model.assignments >= 0).all()  # every index clustered, whichever rank saw it
        for h, k in enumerate((3, 4)):
            centroids, assigned = spherical_kmeans(expected_bank, k, seed=h, backend="torch")
            assert torch.equal(model.prototypes.heads[h].weight, centroids)
            assert torch.equal(model.assignments[h], assigned)
        for tensor in (model.assignments, *model.prototypes.parameters()):
            gathered = [torch.empty_like(tensor) for _ in range(world)]
            dist.all_gather(gathered, tensor.contiguous())
            assert torch.equal(gathered[0], gathered[1])
        # next epoch: the loss has targets on both ranks and backpropagates
        loss, _ = ddp(v1[mine[:2]], v2[mine[:2]], mine[:2])
        loss.backward()
        assert loss.item() > 0
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)
