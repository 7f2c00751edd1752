"""Paths of the real Sentinel-2 samples in ../shared/data (see its README), used in place."""

from __future__ import annotations

from pathlib import Path

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
SAFE = DATA / "safe"
L2A_T29UNU = SAFE / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
L2A_T07HFE = SAFE / "S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857.SAFE"
L1C_T01LAC = SAFE / "S2A_MSIL1C_20200717T221941_R029_T01LAC_20200717T234135.SAFE"
L1C_T46RER = SAFE / "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
AWS_T19UDP = DATA / "aws-l1c-tile" / "T19UDP_2017-07-29"
COGS_L2A = DATA / "cogs-l2a" / "S2A_29RKH_20200219_0_L2A"
DERIVED = DATA / "derived"
#: The bands T29UNU has on disk at 60 m (its R10m files, hence B08, are absent).
T29UNU_60M_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")
