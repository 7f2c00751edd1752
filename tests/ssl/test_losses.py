"""SSL losses: values worked out by hand on tiny tensors, and training signal (the loss falls)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cloudkit.ssl.losses import info_nce, swapped_cluster_loss


class TestInfoNCE:
    def test_value_by_hand(self):
        q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
        queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        # logits / 0.5: sample 0 [q.k, q.n1, q.n2] = [1, 0, -1] / 0.5 = [2, 0, -2]
        #               sample 1                    = [0.8, 1, 0] / 0.5 = [1.6, 2, 0]
        # cross-entropy with target 0: log(sum exp(logits)) - logits[0]
        loss0 = math.log(math.exp(2) + math.exp(0) + math.exp(-2)) - 2
        loss1 = math.log(math.exp(1.6) + math.exp(2) + math.exp(0)) - 1.6
        got = info_nce(q, k, queue, temperature=0.5)
        assert got.item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)

    def test_only_queries_get_gradients(self):
        q = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
        k = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
        queue = F.normalize(torch.randn(5, 4), dim=1).requires_grad_()
        info_nce(q, k, queue, 0.1).backward()
        assert q.grad is not None and q.grad.abs().sum() > 0
        assert k.grad is None and queue.grad is None

    def test_loss_decreases(self):
        gen = torch.Generator().manual_seed(0)
        raw = torch.randn(8, 16, generator=gen).requires_grad_()
        k = F.normalize(torch.randn(8, 16, generator=gen), dim=1)
        queue = F.normalize(torch.randn(32, 16, generator=gen), dim=1)
        opt = torch.optim.SGD([raw], lr=1.0)
        losses = []
        for _ in range(20):
            loss = info_nce(F.normalize(raw, dim=1), k, queue, 0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0]

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="expected q and k"):
            info_nce(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(5, 3), 0.1)


class TestSwappedClusterLoss:
    def test_value_by_hand(self):
        head0 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        head1 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
        a0 = torch.tensor([0, -1])  # sample 1 ignored
        a1 = torch.tensor([1, 2])
        # temperature 0.5 doubles the scores
        # head 0, sample 0: logits [2, 0], target 0   -> log(e^2 + e^0) - 2
        # head 1, sample 0: logits [0, 2, 0], target 1 -> log(2 + e^2) - 2
        #         sample 1: logits [2, 2, 2], target 2 -> log 3
        h0 = math.log(math.exp(2) + 1) - 2
        h1 = ((math.log(2 + math.exp(2)) - 2) + math.log(3)) / 2
        got = swapped_cluster_loss([head0, head1], [a0, a1], temperature=0.5)
        assert got.item() == pytest.approx((h0 + h1) / 2, rel=1e-6)

    def test_no_assignment_is_a_zero_that_backpropagates(self):
        z = torch.randn(4, 8, requires_grad=True)
        protos = torch.randn(5, 8)
        loss = swapped_cluster_loss([z @ protos.T], [torch.full((4,), -1)], 0.1)
        assert loss.item() == 0.0
        assert loss.requires_grad
        loss.backward()
        assert z.grad is not None and torch.count_nonzero(z.grad) == 0

    def test_loss_decreases(self):
        gen = torch.Generator().manual_seed(0)
        raw = torch.randn(16, 8, generator=gen).requires_grad_()
        protos = [F.normalize(torch.randn(k, 8, generator=gen), dim=1) for k in (4, 6)]
        assignments = [torch.randint(0, k, (16,), generator=gen) for k in (4, 6)]
        opt = torch.optim.SGD([raw], lr=1.0)
        losses = []
        for _ in range(20):
            z = F.normalize(raw, dim=1)
            loss = swapped_cluster_loss([z @ p.T for p in protos], assignments, 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0]

    def test_heads_must_match(self):
        with pytest.raises(ValueError, match="one assignment vector per head"):
            swapped_cluster_loss([torch.zeros(2, 3)], [], 0.1)
