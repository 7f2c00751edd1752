"""The Rust kernels cloudkit runs, from its compiled extension ``cloudkit._core``.

The one module that imports the extension: the package calls ``kernels.<name>``, so what the
product needs from Rust is this list (signatures and docs in ``_core.pyi``). A scene is cut one
tile row at a time (`band_window`, `tile_windows`, `cut_stripe`), written into a tile store
(`TileWriter`) and turned into the network's input (`window_inputs`).
"""

from cloudkit._core import TileWriter, band_window, cut_stripe, tile_windows, window_inputs

__all__ = ["TileWriter", "band_window", "cut_stripe", "tile_windows", "window_inputs"]
