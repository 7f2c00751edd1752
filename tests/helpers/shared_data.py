"""Where the real Sentinel-2 samples are (``../shared/data`` from the project root, see its
README): the one definition. They are used in place, never copied.

A test that reads them is skipped, with the reason, when they are absent: it takes a fixture of
``conftest.py``, carries ``@pytest.mark.shared_data``, or calls :func:`require` (as the helpers
that build stores from them do).
"""

from __future__ import annotations

from pathlib import Path

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
SAFE = DATA / "safe"
#: Real L2A, baseline 04.00 (offsets -1000); only the R60m band files are present.
L2A_T29UNU = SAFE / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
#: Real L2A, baseline 02.12 (no offsets); every file a 100x100 GeoTIFF at 1098 m.
L2A_T07HFE = SAFE / "S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857.SAFE"
#: Real L1C, baseline 02.09, product name without the _Nxxxx field; metadata only.
L1C_T01LAC = SAFE / "S2A_MSIL1C_20200717T221941_R029_T01LAC_20200717T234135.SAFE"
#: Real L1C, baseline 03.01; metadata only.
L1C_T46RER = SAFE / "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
#: Real L1C band folder (AWS tile layout): 13 bands, all at 900 m, 122x122.
AWS_T19UDP = DATA / "aws-l1c-tile" / "T19UDP_2017-07-29"
#: Real L2A COG band folder: 12 bands at 100/200/600 m, SCL.tif, STAC item JSON.
COGS_L2A = DATA / "cogs-l2a" / "S2A_29RKH_20200219_0_L2A"
DERIVED = DATA / "derived"
#: Real 13-band GeoTIFF (ESA order, band descriptions), 687x687 at ~160 m.
STACK_13BAND = DERIVED / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif"
#: s2cloudless's cloud probability of STACK_13BAND, on its grid.
T19UDP_S2CLOUDLESS = DERIVED / "T19UDP_preview_s2cloudless_prob.tif"
#: The bands T29UNU has on disk at 60 m (its R10m files, hence B08, are absent).
T29UNU_60M_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")


def require() -> Path:
    """:data:`DATA`; skips the calling test (or fixture) when the samples are absent."""
    if not DATA.is_dir():
        import pytest  # only here: the benches read these paths without pytest

        pytest.skip(f"real Sentinel-2 samples not found at {DATA}")
    return DATA
