"""Segmentation losses: hand-computed values, ignored pixels, learning, empty batches."""

from __future__ import annotations

import math

import pytest
import torch

from cloudkit.data.tasks import IGNORE
from cloudkit.models.losses import dice_bce_loss, dice_ce_loss, predict_classes

LN3 = math.log(3.0)


def binary_case(ignored_logit: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[[0.0, LN3], [-LN3, ignored_logit]]]], requires_grad=True)
    targets = torch.tensor([[[1, 0], [1, IGNORE]]])
    return logits, targets


def multi_case(ignored_logit: float = 7.0) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[0.0, LN3], [0.0, ignored_logit]])
    logits.requires_grad_(True)
    targets = torch.tensor([[[0, 1], [1, IGNORE]]])
    return logits, targets


class TestDiceBce:
    def test_hand_computed(self):
        # sigmoid: 0.5, 0.75, 0.25 on the three counted pixels, targets 1, 0, 1
        bce = (math.log(2) + math.log(4) + math.log(4)) / 3
        dice = 1 - (2 * (0.5 + 0.25) + 1) / ((0.5 + 0.75 + 0.25) + 2 + 1)
        logits, targets = binary_case()
        assert dice_bce_loss(logits, targets).item() == pytest.approx(bce + dice, rel=1e-6)

    def test_ignored_pixel_changes_nothing(self):
        a, targets = binary_case(5.0)
        b, _ = binary_case(-9.0)
        la, lb = dice_bce_loss(a, targets), dice_bce_loss(b, targets)
        assert la.item() == pytest.approx(lb.item(), abs=1e-7)
        la.backward()
        assert a.grad[0, 0, 1, 1] == 0
        assert (a.grad[0, 0].flatten()[:3] != 0).all()

    def test_all_ignored(self):
        logits = torch.randn(2, 1, 4, 4, requires_grad=True)
        loss = dice_bce_loss(logits, torch.full((2, 4, 4), IGNORE))
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(logits.grad).all()

    def test_bad_shapes(self):
        with pytest.raises(ValueError, match="1 channel"):
            dice_bce_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
        with pytest.raises(ValueError, match="differ"):
            dice_bce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2, dtype=torch.long))


class TestDiceCe:
    def test_hand_computed(self):
        # softmax class-1 probabilities 0.5, 0.75, 0.5 on the counted pixels, targets 0, 1, 1
        ce = (math.log(2) + math.log(4 / 3) + math.log(2)) / 3
        dice0 = 1 - (2 * 0.5 + 1) / ((0.5 + 0.25 + 0.5) + 1 + 1)
        dice1 = 1 - (2 * (0.75 + 0.5) + 1) / ((0.5 + 0.75 + 0.5) + 2 + 1)
        logits, targets = multi_case()
        expected = ce + (dice0 + dice1) / 2
        assert dice_ce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)

    def test_ignored_pixel_changes_nothing(self):
        a, targets = multi_case(7.0)
        b, _ = multi_case(-3.0)
        la, lb = dice_ce_loss(a, targets), dice_ce_loss(b, targets)
        assert la.item() == pytest.approx(lb.item(), abs=1e-7)
        la.backward()
        assert (a.grad[0, :, 1, 1] == 0).all()

    def test_all_ignored(self):
        logits = torch.randn(2, 4, 4, 4, requires_grad=True)
        loss = dice_ce_loss(logits, torch.full((2, 4, 4), IGNORE))
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(logits.grad).all()

    def test_half_logits_give_float32(self):
        logits, targets = multi_case()
        assert dice_ce_loss(logits.detach().half(), targets).dtype == torch.float32


@pytest.mark.parametrize(("loss_fn", "k"), [(dice_bce_loss, 1), (dice_ce_loss, 4)])
def test_adam_lowers_loss(loss_fn, k):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    classes = 2 if k == 1 else k
    targets = torch.randint(0, classes, (2, 8, 8), generator=gen)
    targets[:, 0, :] = IGNORE
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, k, kernel_size=3, padding=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        loss = loss_fn(net(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_predict_classes():
    logits = torch.tensor([[[[-0.1, 0.2]]]])
    assert predict_classes(logits, binary=True).tolist() == [[[0, 1]]]
    # (1, 4, 1, 3) logits of clear, thick, thin, shadow
    multi = torch.tensor(
        [[[[3.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]], [[0.5, 3.0, 0.0]], [[0.0, 0.0, 2.0]]]]
    )
    pred = predict_classes(multi, binary=False)
    assert pred.dtype == torch.int64 and pred.tolist() == [[[0, 2, 3]]]
    # cloud on thick + thin: (0.4, 0.3, 0.3, 0) is thick, not clear
    split = torch.log(torch.tensor([0.4, 0.3, 0.3, 1e-6])).reshape(1, 4, 1, 1)
    assert predict_classes(split, binary=False).tolist() == [[[1]]]


class TestClassWeights:
    def test_binary_hand_computed(self):
        # positives (pixels 1 and 3) count 3 times, the negative once; still / 3 pixels
        bce = (3 * math.log(2) + math.log(4) + 3 * math.log(4)) / 3
        dice = 1 - (2 * (0.5 + 0.25) + 1) / ((0.5 + 0.75 + 0.25) + 2 + 1)
        logits, targets = binary_case()
        loss = dice_bce_loss(logits, targets, torch.tensor([1.0, 3.0]))
        assert loss.item() == pytest.approx(bce + dice, rel=1e-6)

    def test_multi_weights_scale_each_class_cross_entropy(self):
        logits, targets = multi_case()
        plain = dice_ce_loss(logits, targets)
        # class 1's two pixels counted twice: the CE rises by their CE, the Dice stays
        doubled = dice_ce_loss(logits, targets, torch.tensor([1.0, 2.0]))
        ce_class1 = (math.log(1 + 1 / 3) + math.log(2)) / 3
        assert (doubled - plain).item() == pytest.approx(ce_class1, rel=1e-6)

    def test_unit_weights_change_nothing(self):
        logits, targets = multi_case()
        ones = dice_ce_loss(logits, targets, torch.ones(2))
        assert ones.item() == pytest.approx(dice_ce_loss(logits, targets).item(), rel=1e-7)
