"""Where one scene's prediction outputs go in a folder, and when they are complete: the mask
and the JSON summary (written last) both there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputPaths:
    """Final file names of one scene's outputs (whether or not they were requested)."""

    mask: Path
    probabilities: Path
    quicklook: Path
    summary: Path


def output_paths(out_dir: Path, scene_id: str) -> OutputPaths:
    """Where the outputs of ``scene_id`` go in ``out_dir``."""
    out_dir = Path(out_dir)
    return OutputPaths(
        mask=out_dir / f"{scene_id}_mask.tif",
        probabilities=out_dir / f"{scene_id}_probabilities.tif",
        quicklook=out_dir / f"{scene_id}_quicklook.png",
        summary=out_dir / f"{scene_id}.json",
    )


def is_complete(out_dir: Path, scene_id: str) -> bool:
    """True when the mask and the summary exist; the summary is written last."""
    paths = output_paths(out_dir, scene_id)
    return paths.mask.is_file() and paths.summary.is_file()
