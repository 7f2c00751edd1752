"""Where a scene's windows (the store's tiles, predict's windows) lie, grouped by tile row."""

from __future__ import annotations

from dataclasses import dataclass

from cloudkit import kernels


@dataclass(frozen=True)
class WindowGrid:
    """Windows of ``size`` px sharing ``overlap`` px over a ``height`` x ``width`` grid.

    ``columns`` maps each tile row's origin (top to bottom) to its windows' column origins,
    left to right: the order in which the Rust kernels cut a row.
    """

    size: int
    overlap: int
    height: int
    width: int
    columns: dict[int, list[int]]

    @classmethod
    def of(cls, height: int, width: int, size: int, overlap: int) -> WindowGrid:
        columns: dict[int, list[int]] = {}
        for row, col in kernels.tile_windows(height, width, size, overlap):
            columns.setdefault(row, []).append(col)
        return cls(size, overlap, height, width, dict(sorted(columns.items())))

    @property
    def rows(self) -> list[int]:
        """The tile rows' origins, top to bottom."""
        return list(self.columns)

    def row_height(self, row: int) -> int:
        """Grid rows the tile row at ``row`` covers (fewer than ``size`` at the bottom)."""
        return min(self.size, self.height - row)

    def __len__(self) -> int:
        return sum(len(cols) for cols in self.columns.values())
