"""The quicklook's pixels: the scene in true colour, each class worth pointing at painted over
it in its colour, and a legend of each class's share (the figure itself: `plots.py`). The
mask's palette takes the same colours."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: long side of the quicklook, at most
QUICKLOOK_SIZE = 1024
#: reflectance shown as full white in the quicklook, and the gamma applied after the stretch
QUICKLOOK_WHITE = 0.3
QUICKLOOK_GAMMA = 1.6
#: quicklook background where the model has no B04/B03/B02
QUICKLOOK_GREY = 128
QUICKLOOK_ALPHA = 0.5

#: colours of the classes worth pointing at (palette and quicklook overlay)
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "cloud": (255, 0, 255),
    "thick cloud": (255, 0, 255),
    "thin cloud": (0, 255, 255),
    "cloud shadow": (255, 200, 0),
    "shadow": (255, 200, 0),
    "cloud or shadow": (255, 0, 255),
}
#: palette colour of every other class ("clear", "no shadow"); not overlaid in the quicklook
OTHER_COLOUR = (40, 160, 40)


def class_colour(name: str) -> tuple[int, int, int] | None:
    """RGB colour overlaid for class ``name``, or None for classes left unmarked."""
    return CLASS_COLOURS.get(name.strip().lower())


def true_colour(rgb: np.ndarray) -> np.ndarray:
    """(3, h, w) reflectance -> uint8: linear stretch 0..QUICKLOOK_WHITE, then gamma."""
    stretched = np.clip(np.nan_to_num(rgb, nan=0.0) / QUICKLOOK_WHITE, 0.0, 1.0)
    return np.rint(255 * stretched ** (1 / QUICKLOOK_GAMMA)).astype(np.uint8)


def class_overlay(background: np.ndarray, classes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``background`` (3, h, w uint8) with each coloured class of ``classes`` (h, w codes
    into ``names``) blended over it at QUICKLOOK_ALPHA."""
    overlay = background.copy()
    for code, name in enumerate(names):
        colour = class_colour(name)
        if colour is None:
            continue
        hit = classes == code
        paint = QUICKLOOK_ALPHA * np.array(colour, dtype=np.float64)[:, None]
        overlay[:, hit] = np.rint((1 - QUICKLOOK_ALPHA) * overlay[:, hit] + paint).astype(np.uint8)
    return overlay


def legend(
    counts: np.ndarray, names: Sequence[str], nodata: int
) -> list[tuple[str, tuple[int, int, int] | None]]:
    """Each class and its share of the valid pixels (``counts``: pixels per code, ``nodata``
    the code without data); no data as a share of the image."""
    valid = max(1, int(counts[:nodata].sum()))
    entries: list[tuple[str, tuple[int, int, int] | None]] = [
        (f"{name} {100 * counts[code] / valid:.1f} %", class_colour(name))
        for code, name in enumerate(names)
    ]
    if counts[nodata]:
        share = 100 * counts[nodata] / counts.sum()
        entries.append((f"no data {share:.1f} % of the image", (0, 0, 0)))
    return entries
