"""The README's pictures, made with cloudkit commands (run from the repository root):

    python docs/figures/make_figures.py [--work DIR]

- ``quicklook_t29unu.png``: `cloudkit predict` with the default model on the real L2A product
  T29UNU of ../shared/data (West Ireland, 60 m bands only), its quicklook as written.
- ``demo_results.png``: the label-fraction figure of `cloudkit demo` (synthetic sample: F1 and
  IoU of the cloud class on the held-out product, fine-tuned with 25 % of the labels from
  random weights and from the DeepCluster and MoCo encoders).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / ".." / "shared" / "data"


def cloudkit(*args: str) -> None:
    print("$ cloudkit " + " ".join(args), flush=True)
    subprocess.run(["cloudkit", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("figures-work"))
    work = parser.parse_args().work
    (t29unu,) = (DATA / "safe").glob("*_T29UNU_*.SAFE")
    cloudkit("predict", str(t29unu), "-o", str(work / "t29unu"), "--quicklook", "--overwrite")
    (quicklook,) = (work / "t29unu").glob("*_quicklook.png")
    shutil.copyfile(quicklook, HERE / "quicklook_t29unu.png")
    cloudkit("demo", "--out", str(work / "demo"))
    shutil.copyfile(work / "demo" / "experiment" / "results.png", HERE / "demo_results.png")
    print(f"written: {HERE / 'quicklook_t29unu.png'}, {HERE / 'demo_results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
