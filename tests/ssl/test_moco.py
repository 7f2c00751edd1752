"""MoCo v2: shapes, the EMA key encoder, the queue, learning, and shuffled BN under DDP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from cloudkit.models.encoder import Encoder
from cloudkit.ssl.moco import MoCo

BANDS = ("B02", "B03", "B04")


def tiny_moco(**kwargs) -> MoCo:
    torch.manual_seed(0)
    options = {"dim": 16, "queue_size": 16, "momentum": 0.9, "temperature": 0.2} | kwargs
    return MoCo(BANDS, **options)


def batch(n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, len(BANDS), 32, 32, generator=gen)
    return x, (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def test_shapes_and_loss():
    model = tiny_moco()
    loss, q = model(*batch())
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert q.shape == (4, 16) and not q.requires_grad
    torch.testing.assert_close(q.norm(dim=1), torch.ones(4))
    assert isinstance(model.encoder(), Encoder) and model.encoder() is model.query


def test_key_encoder_moves_only_by_ema():
    model = tiny_moco(momentum=0.9)
    assert not any(p.requires_grad for p in [*model.key.parameters(), *model.key_fc.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    keys = [*model.key.parameters(), *model.key_fc.parameters()]
    queries = [*model.query.parameters(), *model.query_fc.parameters()]
    for step in range(2):
        expected = [
            0.9 * k.detach().clone() + 0.1 * q.detach() for k, q in zip(keys, queries, strict=True)
        ]
        loss, _ = model(*batch(seed=step))
        for k, e in zip(keys, expected, strict=True):
            torch.testing.assert_close(k, e, rtol=1e-5, atol=1e-6)
        after_forward = [k.clone() for k in keys]
        opt.zero_grad()
        loss.backward()
        assert all(k.grad is None for k in keys)
        assert all(q.grad is not None for q in model.query_fc.parameters())
        opt.step()
        assert all(torch.equal(k, a) for k, a in zip(keys, after_forward, strict=True))


def test_queue_advances_with_normalised_keys():
    model = tiny_moco()
    before = model.queue.queue.clone()
    model(*batch())
    assert int(model.queue.ptr) == 4
    assert not torch.equal(model.queue.queue[:4], before[:4])
    assert torch.equal(model.queue.queue[4:], before[4:])
    torch.testing.assert_close(model.queue.queue[:4].norm(dim=1), torch.ones(4))


def test_eval_changes_nothing():
    model = tiny_moco().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        loss, _ = model(*batch())
    assert math.isfinite(loss.item())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_shuffled_keys_come_back_in_order():
    # in eval mode BatchNorm uses running statistics, so shuffling and splitting the key batch
    # must give every sample exactly its own key
    model = tiny_moco().eval()
    x, _ = batch(6)
    with torch.no_grad():
        torch.testing.assert_close(model._keys(x), model._encode_key(x), rtol=1e-4, atol=1e-5)


def test_queue_must_be_a_multiple_of_the_batch():
    model = tiny_moco(queue_size=16)
    with pytest.raises(ValueError, match="does not divide the queue size 16"):
        model(*batch(3))


def test_loss_decreases_on_a_fixed_batch():
    model = tiny_moco(queue_size=16, momentum=0.99)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    view1, view2 = batch(8)
    with torch.no_grad():  # fill the queue with this batch's keys: the negatives are real
        for _ in range(2):
            model(view1, view2)
    losses = []
    for _ in range(12):
        loss, _ = model(view1, view2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # single steps are noisy (the key batch is split at random for its BatchNorm statistics)
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses


# ---------------------------------------------------------------- DDP: 2 gloo ranks on CPU


def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = tiny_moco(queue_size=16)  # same seed: same weights and queue on both ranks
        # unshuffling: in eval mode (BatchNorm on running statistics, equal on both ranks
        # before training) each rank must get back exactly the keys of its own samples
        model.eval()
        x, _ = batch(2, seed=100 + rank)
        with torch.no_grad():
            torch.testing.assert_close(model._keys(x), model._encode_key(x), rtol=1e-4, atol=1e-5)
        model.train()
        # no buffer broadcast: the queues must agree by construction, not by DDP's copying
        ddp = DistributedDataParallel(model, forward_sync_buffers=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
        for step in range(2):
            loss, q = ddp(*batch(2, seed=10 * rank + step))  # different data on each rank
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert math.isfinite(loss.item()) and q.shape == (2, 16)
        assert int(model.queue.ptr) == 8  # 2 steps x 2 ranks x 2 keys
        for tensor in (model.queue.queue, *model.query.parameters(), *model.key.parameters()):
            parts = [torch.empty_like(tensor) for _ in range(world)]
            dist.all_gather(parts, tensor.contiguous())
            assert torch.equal(parts[0], parts[1])
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)
