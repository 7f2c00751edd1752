"""The geometric shadow check (`cloudkit.geometry.shadows`) as `cloudkit predict` streams a scene.

While the mask's rows go to disk, their cloud, shadow and shadow probability are summed
into the check's coarse grid and each pixel's next likeliest class is kept beside the mask
(`MaskWriter`'s fallback). When the last row is in, the check decides where shadow is
explained and the mask's shadow pixels elsewhere are rewritten, strip by strip.
"""

from __future__ import annotations

import numpy as np

from cloudkit.geometry.shadows import (
    ClassCodes,
    CoarseAccumulator,
    Decision,
    Tally,
    decide,
    fallback_classes,
)
from cloudkit.geometry.sun import SunAngles
from cloudkit.io.grid import GridPlan
from cloudkit.io.sun_metadata import plan_sun

GEOMETRIC, MODEL = "geometric", "model"


class ShadowPass:
    """The check of one scene: :meth:`add` every row, then :meth:`decide`, then
    :meth:`apply` to every strip of the finished mask."""

    def __init__(self, plan: GridPlan, classes, task: str, given: SunAngles | None) -> None:
        self.codes = ClassCodes.of(classes)
        self.classes = tuple(classes)
        self._rule = "multi" if task == "multi" else "argmax"
        self.sun, self.latitude = plan_sun(plan, given)
        self._acc = CoarseAccumulator(plan.height, plan.width, plan.resolution)
        self._tally = Tally(classes)
        self._decision: Decision | None = None

    @property
    def active(self) -> bool:
        """False for a model without a shadow class: nothing to check."""
        return self.codes.shadow is not None

    def add(
        self, row0: int, classes: np.ndarray, probabilities: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Rows of the mask and their (K, rows, width) probabilities -> the fallback classes."""
        shadow = self.codes.shadow
        assert shadow is not None  # rows are added to an active check only
        self._acc.add(
            row0,
            np.isin(classes, self.codes.cloud),
            classes == shadow,
            probabilities[shadow],
            valid,
        )
        return fallback_classes(probabilities, shadow, self._rule, self.codes.cloud)

    def decide(self) -> None:
        self._decision = decide(self._acc.masks(), self.sun, self._acc.factor, self.latitude)

    def apply(self, row0: int, classes: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        if self._decision is None:
            raise RuntimeError("ShadowPass.decide() must come before apply()")
        return self._tally.apply(self._decision, self.codes, row0, classes, fallback)

    @property
    def changes(self) -> np.ndarray:
        """Per class: pixels it gained from removed shadow (the shadow class loses them all)."""
        return self._tally.to

    def report(self) -> dict:
        decision = self._decision.report if self._decision is not None else {}
        return {"method": GEOMETRIC, **decision, **self._tally.report()}


def sun_report(sun: SunAngles | None) -> dict | None:
    return sun.as_dict() if sun is not None else None
