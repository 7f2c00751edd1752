"""The README's pictures, made with cloudkit commands (run from the repository root):

    python docs/figures/make_figures.py [--work DIR]

- ``quicklook_t29unu.png``: `cloudkit predict` with the default model on the real L2A product
  T29UNU of ../shared/data (West Ireland, 60 m bands only), its quicklook as written.
- ``label_fractions.png``: the paper's figure on `cloudkit demo`'s synthetic sample: F1 and IoU
  of the cloud class on the held-out product against the share of labels (10 to 100 %),
  fine-tuned for 20 epochs with the demo's other options from random weights and from its
  DeepCluster and MoCo encoders (`cloudkit experiment` on the demo's stores; about 15 minutes
  on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / ".." / "shared" / "data"
METHODS = ("deepcluster", "moco")


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
    demo = work / "demo"
    cloudkit("demo", "--out", str(demo))
    inits = ",".join(["random", *(str(demo / f"pretrain-{m}" / "last.pt") for m in METHODS)])
    cloudkit("experiment", str(demo / "train.zarr"), "--test-store", str(demo / "test.zarr"),
             "--inits", inits, "--fractions", "10,25,50,100", "--task", "cloud",
             "--epochs", "20", "--batch-size", "8", "--crop", "64", "--lr", "1e-3",
             "--freeze-epochs", "2", "--backbone-lr-scale", "0.5", "--patience", "0",
             "--device", "auto", "--workers", "0", "--seed", "0", "--out", str(work / "label-fractions"))  # fmt: skip
    shutil.copyfile(work / "label-fractions" / "results.png", HERE / "label_fractions.png")
    print(f"written: {HERE / 'quicklook_t29unu.png'}, {HERE / 'label_fractions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
