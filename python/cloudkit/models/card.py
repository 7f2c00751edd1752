"""Model cards: what a model reads, predicts, was trained on, may be used under, and scores.

Every model `cloudkit predict --model` accepts by name has one: the models shipped inside
cloudkit (`zoo.SHIPPED`) and the peer models (`peers.registry.PEERS`). `cloudkit models` prints
them; the README's model card holds the same text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One measured figure: ``metric`` (e.g. "cloud F1 against human labels") was ``value``
    on ``data``."""

    metric: str
    value: float
    data: str


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    bands: str
    classes: tuple[str, ...]
    resolution: str  # what it was trained at / made for
    training_data: str
    licence: str  # of the weights, and so of what is trained on their output
    source: str
    scores: tuple[Score, ...] = ()
    #: how to get it when it is not part of cloudkit itself
    install: str | None = None
    #: what else a user must know (e.g. what its licence means for its output)
    note: str | None = None

    def short(self) -> list[str]:
        """A few lines for the list of `cloudkit models`."""
        lines = [
            f"{self.name} {self.version} ({self.licence})",
            f"  bands: {self.bands}",
            f"  classes: {', '.join(self.classes)}; resolution: {self.resolution}",
        ]
        if self.scores:
            best = self.scores[0]
            lines.append(f"  {best.metric}: {best.value:.3f} on {best.data}")
        return lines

    def full(self) -> list[str]:
        """Every field, for `cloudkit models NAME`."""
        lines = [
            f"{self.name} {self.version}",
            f"  bands:         {self.bands}",
            f"  classes:       {', '.join(self.classes)}",
            f"  resolution:    {self.resolution}",
            f"  training data: {self.training_data}",
            f"  licence:       {self.licence}",
            f"  source:        {self.source}",
        ]
        if self.install:
            lines.append(f"  install:       {self.install}")
        if self.note:
            lines.append(f"  note:          {self.note}")
        if self.scores:
            lines.append("  measured:")
            lines += [f"    {s.metric}: {s.value:.3f} on {s.data}" for s in self.scores]
        else:
            lines.append("  measured:      nothing yet")
        return lines
