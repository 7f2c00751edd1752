"""SSL building blocks: EMA, queue, bank, heads, LARS, monitoring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cloudkit.ssl.heads import ProjectionHead, PrototypeHeads
from cloudkit.ssl.lars import LARS, param_groups
from cloudkit.ssl.memory_bank import EmbeddingBank, NegativeQueue
from cloudkit.ssl.momentum import ema_update, freeze
from cloudkit.ssl.monitor import cluster_stats, collapse_threshold, embedding_std, knn_accuracy


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


class TestMomentum:
    def test_ema_rule(self):
        torch.manual_seed(0)
        target, online = small_net(), small_net()
        online[1].running_mean.fill_(0.5)
        before = [p.clone() for p in target.parameters()]
        ema_update(target, online, 0.9)
        for t, t0, o in zip(target.parameters(), before, online.parameters(), strict=True):
            torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=1e-6, atol=1e-7)
        for t, o in zip(target.buffers(), online.buffers(), strict=True):
            assert torch.equal(t, o)

    def test_extremes(self):
        target, online = small_net(), small_net()
        kept = [p.clone() for p in target.parameters()]
        ema_update(target, online, 1.0)
        assert all(torch.equal(t, k) for t, k in zip(target.parameters(), kept, strict=True))
        ema_update(target, online, 0.0)
        assert all(
            torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters(), strict=True)
        )
        with pytest.raises(ValueError, match="momentum"):
            ema_update(target, online, 1.5)

    def test_frozen_params_get_no_grads(self):
        target, online = small_net(), small_net()
        freeze(target)
        assert not any(p.requires_grad for p in target.parameters())
        x = torch.randn(5, 4)
        (target(x).sum() + online(x).sum()).backward()
        assert all(p.grad is None for p in target.parameters())
        assert all(p.grad is not None for p in online.parameters())
        ema_update(target, online, 0.5)  # still works on frozen params
        assert not any(p.requires_grad for p in target.parameters())


class TestNegativeQueue:
    def test_starts_normalised(self):
        q = NegativeQueue(dim=8, size=6)
        assert q.queue.shape == (6, 8) and int(q.ptr) == 0
        torch.testing.assert_close(q.queue.norm(dim=1), torch.ones(6))
        assert set(q.state_dict()) == {"queue", "ptr"}

    def test_fifo_and_wrap(self):
        q = NegativeQueue(dim=3, size=6)
        batches = [torch.full((2, 3), float(i)) for i in range(1, 5)]
        ptrs = []
        for b in batches:
            q.enqueue(b)
            ptrs.append(int(q.ptr))
        assert ptrs == [2, 4, 0, 2]
        # the oldest batch (1) was overwritten by the fourth: rows hold 4, 2, 3
        expected = torch.cat([batches[3], batches[1], batches[2]])
        assert torch.equal(q.queue, expected)

    @pytest.mark.parametrize(
        ("batch", "message"),
        [(4, "does not divide the queue size 6"), (8, "cannot take a batch of 8")],
    )
    def test_bad_batch(self, batch, message):
        q = NegativeQueue(dim=3, size=6)
        with pytest.raises(ValueError, match=message):
            q.enqueue(torch.zeros(batch, 3))
        assert int(q.ptr) == 0

    def test_bad_dim(self):
        with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
            NegativeQueue(dim=3, size=6).enqueue(torch.zeros(2, 4))


class TestEmbeddingBank:
    def test_update_by_index_and_reset(self):
        bank = EmbeddingBank(num_samples=5, dim=2)
        bank.update(torch.tensor([3, 1]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        assert torch.equal(bank.filled, torch.tensor([False, True, False, True, False]))
        assert torch.equal(bank.embeddings[3], torch.tensor([1.0, 0.0]))
        assert torch.equal(bank.embeddings[[0, 2, 4]], torch.zeros(3, 2))
        bank.reset()
        assert not bank.filled.any() and not bank.embeddings.any()

    def test_index_out_of_range(self):
        with pytest.raises(ValueError, match=r"\[0, 5\)"):
            EmbeddingBank(5, 2).update(torch.tensor([5]), torch.zeros(1, 2))

    def test_detached(self):
        bank = EmbeddingBank(3, 2)
        z = torch.randn(2, 2, requires_grad=True)
        bank.update(torch.tensor([0, 2]), z * 2)
        assert not bank.embeddings.requires_grad


class TestHeads:
    def test_projection_shape(self):
        head = ProjectionHead()
        assert head(torch.randn(4, 512)).shape == (4, 128)
        assert isinstance(head.net[1], nn.BatchNorm1d)

    def test_prototypes_not_trained_but_pass_gradients(self):
        heads = PrototypeHeads(dim=8, n_prototypes=(3, 5))
        assert len(heads) == 2
        assert not any(p.requires_grad for p in heads.parameters())
        z = torch.randn(4, 8, requires_grad=True)
        scores = heads(z)
        assert [s.shape for s in scores] == [(4, 3), (4, 5)]
        sum(s.sum() for s in scores).backward()
        assert z.grad is not None
        assert all(p.grad is None for p in heads.parameters())

    def test_set_prototypes(self):
        heads = PrototypeHeads(dim=4, n_prototypes=(2, 3))
        c = F.normalize(torch.randn(3, 4), dim=1)
        heads.set_prototypes(1, c)
        assert torch.equal(heads.heads[1].weight, c)
        assert not heads.heads[1].weight.requires_grad
        torch.testing.assert_close(heads(c)[1], c @ c.T)
        with pytest.raises(ValueError, match="head 0 holds"):
            heads.set_prototypes(0, c)


class TestLARS:
    def test_param_groups(self):
        net = small_net()
        net[3].weight.requires_grad_(False)
        groups = param_groups(net, weight_decay=1e-6)
        assert len(groups) == 2
        regular, excluded = groups
        assert regular["weight_decay"] == 1e-6 and not regular["lars_exclude"]
        assert [tuple(p.shape) for p in regular["params"]] == [(3, 4)]
        assert excluded["lars_exclude"] and excluded["weight_decay"] == 0.0
        # linear biases and the BatchNorm weight and bias
        assert sorted(tuple(p.shape) for p in excluded["params"]) == [(2,), (3,), (3,), (3,)]

    def test_first_step_by_hand(self):
        w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
        b = nn.Parameter(torch.tensor([1.0]))
        w.grad = torch.tensor([[0.6, 0.8]])  # norm 1
        b.grad = torch.tensor([0.5])
        lr, wd, eta = 0.1, 0.01, 0.02
        opt = LARS(
            [
                {"params": [w]},
                # excluded: no decay even with a weight decay set, no trust ratio
                {"params": [b], "lars_exclude": True},
            ],
            lr=lr,
            weight_decay=wd,
            eta=eta,
        )
        opt.step()
        trust = eta * 5.0 / (1.0 + wd * 5.0)
        expected_w = torch.tensor([[3.0, 4.0]]) - lr * trust * (
            torch.tensor([[0.6, 0.8]]) + wd * torch.tensor([[3.0, 4.0]])
        )
        torch.testing.assert_close(w.detach(), expected_w)
        torch.testing.assert_close(b.detach(), torch.tensor([1.0 - lr * 0.5]))

    def test_zero_weights_fall_back_to_sgd(self):
        w = nn.Parameter(torch.zeros(2, 2))
        w.grad = torch.ones(2, 2)
        LARS([w], lr=0.5).step()
        torch.testing.assert_close(w.detach(), torch.full((2, 2), -0.5))

    def test_loss_decreases(self):
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        model = nn.Linear(4, 1, bias=False)
        opt = LARS(param_groups(model, 1e-4), lr=5.0, eta=0.02)
        losses = []
        for _ in range(30):
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0]


class TestMonitor:
    def test_embedding_std(self):
        collapsed = torch.randn(1, 32).repeat(50, 1)
        assert embedding_std(collapsed) == 0.0
        healthy = embedding_std(torch.randn(4000, 64, generator=torch.Generator().manual_seed(0)))
        assert healthy == pytest.approx(1 / math.sqrt(64), rel=0.05)
        assert collapse_threshold(64) == pytest.approx(0.2 / 8)
        assert healthy > collapse_threshold(64)
        with pytest.raises(ValueError, match="at least 2"):
            embedding_std(torch.randn(1, 4))

    def test_cluster_stats(self):
        stats = cluster_stats(torch.tensor([0, 0, 1, -1]), k=3)
        assert stats["empty_clusters"] == 1
        assert (stats["size_min"], stats["size_max"]) == (0, 2)
        # sizes 2, 1, 0: mean 1, population std sqrt(2/3)
        assert stats["size_cv"] == pytest.approx(math.sqrt(2 / 3))
        with pytest.raises(ValueError, match="out of range"):
            cluster_stats(torch.tensor([3]), k=3)

    def test_knn_accuracy(self):
        gen = torch.Generator().manual_seed(0)
        centres = torch.eye(6)[:3] * 10
        targets = torch.arange(90) % 3
        z = centres[targets] + torch.randn(90, 6, generator=gen)
        assert knn_accuracy(z, targets, k=5) == 1.0
        # unlabelled samples (-1) take no part, even when placed among another class
        noisy = torch.cat([z, centres[:1].repeat(10, 1)])
        labels = torch.cat([targets, torch.full((10,), -1)])
        assert knn_accuracy(noisy, labels, k=5) == 1.0
        # k larger than the labelled set is capped
        assert knn_accuracy(z[:4], torch.tensor([0, 1, 2, 0]), k=20) <= 1.0
        # random labels on random points: far from perfect
        assert knn_accuracy(torch.randn(200, 8, generator=gen), torch.randint(0, 4, (200,))) < 0.6
