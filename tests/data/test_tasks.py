"""Segmentation tasks: the code -> class tables and task_targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudkit.data.tasks import IGNORE, TASKS, Task, get_task, multi_classes, task_targets

CODES = [0, 1, 2, 3, 255]  # clear, thick, thin, shadow, no-data

EXPECTED = {
    "cloud": [0, 1, 1, 0, IGNORE],
    "shadow": [0, 0, 0, 1, IGNORE],
    "joint": [0, 1, 1, 1, IGNORE],
    "multi": [0, 1, 2, 3, IGNORE],
}


class TestTasks:
    def test_all_tasks_known(self):
        assert set(TASKS) == set(EXPECTED)

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_mapping(self, name):
        task = TASKS[name]
        assert task.name == name
        assert task.lut.dtype == np.uint8 and task.lut.shape == (256,)
        assert task.lut[CODES].tolist() == EXPECTED[name]

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_undefined_codes_ignored(self, name):
        lut = TASKS[name].lut
        assert (lut[4:255] == IGNORE).all()

    def test_classes_and_binary(self):
        assert TASKS["cloud"].classes == ("clear", "cloud")
        assert TASKS["shadow"].classes == ("no shadow", "shadow")
        assert TASKS["joint"].classes == ("clear", "cloud or shadow")
        assert TASKS["multi"].classes == ("clear", "thick cloud", "thin cloud", "cloud shadow")
        assert [TASKS[n].binary for n in ("cloud", "shadow", "joint", "multi")] == [
            True,
            True,
            True,
            False,
        ]
        assert TASKS["multi"].num_classes == 4

    def test_lut_read_only(self):
        with pytest.raises(ValueError):
            TASKS["cloud"].lut[0] = 1

    def test_get_task(self):
        assert isinstance(get_task("joint"), Task)
        with pytest.raises(ValueError, match="cloud, shadow, joint, multi"):
            get_task("snow")


class TestTaskTargets:
    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_shape_dtype_values(self, name):
        labels = torch.tensor(CODES * 4, dtype=torch.uint8).reshape(2, 1, 2, 5)
        targets = task_targets(labels, TASKS[name])
        assert targets.shape == (2, 2, 5)
        assert targets.dtype == torch.int64
        assert targets[0, 0].tolist() == EXPECTED[name]
        assert targets[1, 1].tolist() == EXPECTED[name]

    def test_bad_input(self):
        with pytest.raises(ValueError, match="N, 1, H, W"):
            task_targets(torch.zeros(2, 4, 4, dtype=torch.uint8), TASKS["cloud"])
        with pytest.raises(ValueError, match="uint8"):
            task_targets(torch.zeros(2, 1, 4, 4, dtype=torch.int64), TASKS["cloud"])


def test_multi_decides_cloud_on_thick_plus_thin():
    # (clear, thick, thin, shadow) per pixel, and the class each must get
    cases = [
        ((0.4, 0.3, 0.3, 0.0), 1),  # cloud 0.6: thick, though clear is the likeliest class
        ((0.4, 0.2, 0.35, 0.05), 2),  # cloud 0.55: thin is the likelier cloud
        ((0.45, 0.25, 0.2, 0.1), 0),  # cloud 0.45: not cloud; clear beats shadow
        ((0.3, 0.15, 0.05, 0.5), 3),  # cloud 0.2: shadow beats clear
        ((0.9, 0.05, 0.05, 0.0), 0),
    ]
    probs = torch.tensor([p for p, _ in cases]).T.reshape(1, 4, 1, len(cases))
    assert multi_classes(probs)[0, 0].tolist() == [c for _, c in cases]
