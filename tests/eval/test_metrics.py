"""Metrics against confusion matrices computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cloudkit.eval.metrics import (
    ConfusionAccumulator,
    class_metrics,
    confusion_matrix,
    format_table,
)


class TestConfusionMatrix:
    def test_binary_by_hand_ignores_255(self):
        target = np.array([0, 0, 0, 1, 1, 255])
        pred = np.array([0, 1, 0, 1, 0, 1])
        cm = confusion_matrix(pred, target, 2)
        assert cm.dtype == np.int64
        assert cm.tolist() == [[2, 1], [1, 1]]  # rows: truth

    def test_tensors_and_arrays_agree(self):
        gen = torch.Generator().manual_seed(0)
        target = torch.randint(0, 4, (2, 5, 5), generator=gen)
        pred = torch.randint(0, 4, (2, 5, 5), generator=gen)
        target[0, 0] = 255
        assert np.array_equal(
            confusion_matrix(pred, target, 4), confusion_matrix(pred.numpy(), target.numpy(), 4)
        )
        assert confusion_matrix(pred, target, 4).sum() == 50 - 5

    def test_out_of_range_classes_raise(self):
        with pytest.raises(ValueError, match="pred holds class 2"):
            confusion_matrix(np.array([2]), np.array([0]), 2)
        with pytest.raises(ValueError, match="target holds class 7"):
            confusion_matrix(np.array([0]), np.array([7]), 2)
        with pytest.raises(ValueError, match="shape"):
            confusion_matrix(np.zeros(2), np.zeros(3), 2)

    def test_accumulator_sums_batches(self):
        acc = ConfusionAccumulator(2)
        acc.update(np.array([0, 1]), np.array([0, 0]))
        acc.update(torch.tensor([1, 1]), torch.tensor([1, 255]))
        assert acc.matrix.tolist() == [[1, 1], [0, 1]]


class TestClassMetrics:
    def test_binary_by_hand(self):
        m = class_metrics(np.array([[2, 1], [1, 1]]), ("clear", "cloud"))
        assert m["overall_accuracy"] == pytest.approx(3 / 5)
        clear, cloud = m["per_class"]["clear"], m["per_class"]["cloud"]
        assert clear["precision"] == pytest.approx(2 / 3)
        assert clear["recall"] == pytest.approx(2 / 3)
        assert clear["f1"] == pytest.approx(2 / 3)
        assert clear["iou"] == pytest.approx(2 / 4)
        assert clear["accuracy"] == pytest.approx(3 / 5)
        assert (clear["support"], clear["predicted"]) == (3, 3)
        assert cloud["precision"] == pytest.approx(1 / 2)
        assert cloud["iou"] == pytest.approx(1 / 3)
        assert m["balanced_overall_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
        assert m["mean_iou"] == pytest.approx((1 / 2 + 1 / 3) / 2)
        assert m["confusion_matrix"] == [[2, 1], [1, 1]]
        assert m["pixels"] == 5

    def test_four_classes_with_empty_classes(self):
        # class 2: no support but one false positive; class 3: neither support nor predictions
        target = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        pred = np.array([0, 0, 1, 2, 1, 1, 1, 0])
        cm = confusion_matrix(pred, target, 4)
        assert cm.tolist() == [[2, 1, 1, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
        names = ("clear", "thick", "thin", "shadow")
        m = class_metrics(cm, names)
        pc = m["per_class"]
        assert m["overall_accuracy"] == pytest.approx(5 / 8)
        assert pc["clear"]["precision"] == pytest.approx(2 / 3)
        assert pc["clear"]["recall"] == pytest.approx(1 / 2)
        assert pc["clear"]["f1"] == pytest.approx(4 / 7)
        assert pc["clear"]["iou"] == pytest.approx(2 / 5)
        assert pc["thick"]["f1"] == pytest.approx(3 / 4)
        assert pc["thick"]["iou"] == pytest.approx(3 / 5)
        for key in ("precision", "recall", "f1", "iou"):
            assert pc["thin"][key] == 0.0
            assert pc["shadow"][key] == 0.0
        assert pc["thin"]["accuracy"] == pytest.approx(7 / 8)
        assert pc["shadow"]["accuracy"] == 1.0
        # mean recall over classes with support only
        assert m["balanced_overall_accuracy"] == pytest.approx((1 / 2 + 3 / 4) / 2)
        # IoU averaged over classes in the truth or the prediction (thin counts, shadow not)
        assert m["mean_iou"] == pytest.approx((2 / 5 + 3 / 5 + 0.0) / 3)
        json.dumps(m, allow_nan=False)  # no NaN anywhere

    def test_empty_matrix_is_all_zero_not_nan(self):
        m = class_metrics(np.zeros((2, 2), dtype=np.int64), ("a", "b"))
        assert m["overall_accuracy"] == m["balanced_overall_accuracy"] == m["mean_iou"] == 0.0
        json.dumps(m, allow_nan=False)

    def test_shape_must_match_classes(self):
        with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
            class_metrics(np.zeros((2, 2)), ("a", "b", "c"))


def test_format_table_lists_classes_and_totals():
    text = format_table(class_metrics(np.array([[5, 1], [0, 4]]), ("clear", "cloud")))
    assert "clear" in text and "cloud" in text
    assert "overall accuracy 0.9000" in text
    assert "confusion matrix" in text
