"""The recipe of cloudkit's default model, as the cloudkit commands that make it.

    python recipes/default_model.py OUT [--device cpu|cuda] [--data ../shared/data]
                                         [--size full|quick] [--arch ARCH]
                                         [--seeds 0,1,2 | --seed N] [--inits random]

1. Tile every real Sentinel-2 sample of ``../shared/data`` that a model may learn from into
   tile stores of 128 px (see its README):
   - T29UNU (L2A, 60 m, 11 bands) with Sen2Cor's SCL as labels;
   - the Sahara tile 29RKH (L2A, 100 m, bright desert) with its SCL;
   - the T19UDP preview (L1C, 160 m, 13 bands), the six BigEarthNet patches (L2A, 10 m) and
     the eo-learn series (L1C, 10 m, written here as GeoTIFFs with named bands) with labels
     from the teacher ukis-csmask (Apache-2.0);
   - the AWS T19UDP band folder (L1C, 900 m), unlabelled, for pretraining only.
   Left out on purpose: the CloudSEN12 patches (the only human labels: kept for scoring, not
   even their images are trained on) and the s2cloudless 1.2.2 arrays and every s2cloudless
   output (CC BY-SA 4.0: weights trained on them would carry the share-alike licence).
2. With ``--inits deepcluster`` (or ``moco``), self-supervised pretraining of an any-band
   encoder on every store (labels unused; the two views of a tile keep different random band
   subsets). Not by default: at this scale (225 labelled tiles) neither pretrained start
   fine-tuned to a lower validation loss than random weights (docs/models.md).
3. Fine-tuning of a U-Net on the labelled stores, task ``multi`` (clear, thick cloud, thin
   cloud, cloud shadow), any band subset holding B02 B03 B04, with synthetic clouds, shadows
   cast by each tile's sun, haze and snow, and crops seen at 10 to 60 m, from random weights
   (``finetune-random``) and from each pretrained encoder asked for (``finetune-INIT``), once
   per seed of ``--seeds`` (0, 1 and 2 by default), every seed validated on the first seed's
   held-out tiles (``finetune --split-seed``) so their val losses compare. Each run's best.pt
   is its epoch of the lowest val loss (``finetune --best-by loss``; ``--best-by iou`` keeps
   the highest val IoU, as the recipe did before 2026-12-07).
4. The run with the lowest validation loss of them all (never a scoring set) is exported in
   half precision, as cloudkit ships it: ``OUT/default.pt`` (`cloudkit export`); every run is
   exported beside its folder (``OUT/finetune-random.pt``, ``OUT/runs/.../finetune-random.pt``).

The shipped weights are what this recipe makes with its defaults: seed 0's run (val loss
1.1439 against 1.1695 and 1.1800 for seeds 1 and 2). Before 2026-12-07 cloudkit shipped the
recipe of commit 1562a15 (one seed, best.pt by val IoU, synthetic shadows placed at random);
docs/models.md compares the two.

Every step is a cloudkit command, printed before it runs; an interrupted recipe continues where
it stopped (tiling skips the scenes a store holds, a training run resumes from its last epoch
and is left alone once complete, an exported model is not exported again). Seeded: the same
data and options give the same weights on the CPU with OMP_NUM_THREADS=1 (other thread counts
round differently; about 45 minutes on 2 cores: tiling 5, each fine-tuning 13).
``--size quick`` is a minutes-long run of the same steps (CI); ``--device cuda`` runs the full
recipe at a larger scale (longer training, bigger batches). ``--arch`` picks the encoder
(``cloudkit finetune --arch``; the light ones are several times cheaper per pixel), ``--seed
N`` runs that one seed instead of ``--seeds``, ``--inits`` which starts to train (random,
deepcluster, moco) and ``--fractions`` at which percentages of the labelled tiles
(10,25,50,100: the paper's label-fraction grid; the runs below 100 % are named ``-fNN``);
``--teacher ukis-csmask+dl-l8s2-uv`` labels the L1C sources by the two teachers' vote (into
``stores-TEACHER/``), ``--scl-vote ukis-csmask`` the L2A scenes by SCL voting with that
teacher (``tile --scl-labels --labels-from``, into ``stores-scl+TEACHER/``),
``--hard-negatives W`` shows tiles of dark or bright clear ground more often (``cloudkit
finetune --hard-negatives``). The stores are shared: several seeds or architectures may use
one OUT's ``stores/``, each run in its own
``runs/ARCH-sSEED[-TEACHER][-scl+TEACHER][-hardW][-splitN]`` (N: the first of ``--seeds``),
but for the shipped configuration's first seed (ResNet-18, seed 0, no variant), which runs
in OUT itself.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

TILE = 128
SEED = 0  # the first seed: its run is the shipped configuration's, in OUT
SEEDS = (SEED, 1, 2)
TEACHER = "ukis-csmask"
T29UNU_BANDS = "B01,B02,B03,B04,B05,B06,B07,B8A,B09,B11,B12"
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: (pretrain epochs, pretrain batch, finetune epochs, finetune batch) per size and device
SCALES = {
    ("full", "cpu"): (40, 32, 30, 8),
    ("full", "cuda"): (200, 128, 400, 32),
    ("quick", "cpu"): (2, 16, 2, 4),
    ("quick", "cuda"): (2, 16, 2, 4),
}


#: options of each self-supervised method beyond the shared ones. MoCo's queue of negatives is
#: kept below the ~450 tiles, so that it never holds an older view of the tile it contrasts
PRETRAINING = {
    "deepcluster": ("--prototypes", "64,64,64"),
    "moco": ("--queue-size", "128"),
}


def run_name(init: str, fraction: int) -> str:
    """The run folder of a fine-tuning: ``finetune`` (from DeepCluster, as the shipped recipe
    has always named it), ``finetune-random``, ``finetune-moco``; ``-fNN`` for NN % of the
    labelled tiles."""
    name = "finetune" if init == "deepcluster" else f"finetune-{init}"
    return name if fraction == 100 else f"{name}-f{fraction}"


class StepFailed(Exception):
    pass


def run(*args: str) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in ("cloudkit", *args)), flush=True)
    # the cloudkit of this interpreter, whether or not its environment is on PATH
    if subprocess.run([sys.executable, "-m", "cloudkit.cli", *args]).returncode != 0:
        raise StepFailed(f"recipe: `cloudkit {args[0]}` failed (its error is above)")


def train(command: str, out: Path, *args: str) -> None:
    """``cloudkit pretrain|finetune ARGS --out OUT``, run to its end: a run OUT already holds
    is continued (``--resume``; a complete one is left as it is), so a recipe killed mid-run
    never ships the best epoch of half a run."""
    resume = ["--resume"] if (out / "last.pt").exists() else []
    run(command, *args, "--out", str(out), *resume)


def write_eolearn_geotiffs(data: Path, folder: Path) -> list[Path]:
    """The eo-learn test series (5 dates, 13 bands, 10 m) as GeoTIFFs whose band descriptions
    name the bands, so `cloudkit tile` reads them; georeferenced at 10 m from the upper left
    corner of its UTM 33N bbox (which is not a whole number of pixels wide)."""
    import rasterio
    from affine import Affine

    series = np.load(data / "eolearn" / "eolearn_l1c_13band_with_s2cloudless_clm.npz")
    bands = [str(b) for b in series["band_names"]]
    x0, _, _, y1 = (float(v) for v in np.ravel(series["bbox_utm33n"]))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, stamp in enumerate(series["timestamps"]):
        image = series["bands"][t]  # (H, W, 13) L1C reflectance
        h, w = image.shape[:2]
        name = f"eolearn_MSIL1C_{str(stamp)[:10].replace('-', '')}.tif"
        path = folder / name
        if not path.exists():
            dn = np.clip(np.round(image * 10000.0), 1, 65535).astype(np.uint16)
            profile = {
                "driver": "GTiff",
                "width": w,
                "height": h,
                "count": len(bands),
                "dtype": "uint16",
                "crs": "EPSG:32633",
                "transform": Affine(10.0, 0.0, x0, 0.0, -10.0, y1),
                "nodata": 0,
            }
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.moveaxis(dn, -1, 0))
                for i, band in enumerate(bands, start=1):
                    dst.set_band_description(i, band)
        paths.append(path)
    return paths


def tile_sources(
    data: Path, out: Path, l1c_teacher: str, scl_vote: str = ""
) -> tuple[list[Path], list[Path]]:
    """(labelled stores, unlabelled stores); ``l1c_teacher`` labels the L1C sources (the L2A
    ones are ukis-csmask's: DL-L8S2-UV reads top-of-atmosphere reflectance only); SCL labels
    the L2A scenes, alone or voting with the teacher ``scl_vote``."""
    stores = out / "stores"
    voted = out / f"stores-{l1c_teacher}"  # only what another teacher labels is tiled again
    scl = ["--scl-labels", *(["--labels-from", scl_vote] if scl_vote else [])]
    (t29unu,) = (data / "safe").glob("*_T29UNU_*.SAFE")
    plans = [
        ("t29unu", [t29unu], ["--resolution", "60", "--bands", T29UNU_BANDS, *scl]),
        ("sahara", [data / "cogs-l2a" / "S2A_29RKH_20200219_0_L2A"], scl),
        (
            "t19udp-preview",
            [data / "derived" / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif"],
            ["--labels-from", l1c_teacher],
        ),
        (
            "bigearthnet",
            sorted((data / "bigearthnet" / "BigEarthNet-S2-Example").iterdir()),
            ["--labels-from", "ukis-csmask"],
        ),
        (
            "eolearn",
            write_eolearn_geotiffs(data, out / "sources" / "eolearn"),
            ["--labels-from", l1c_teacher],
        ),
    ]
    labelled = []
    for name, paths, options in plans:
        store = (voted if l1c_teacher != TEACHER and l1c_teacher in options else stores) / name
        if scl_vote and "--scl-labels" in options:
            store = out / f"stores-scl+{scl_vote}" / name
        store = store.with_suffix(".zarr")
        run("tile", *map(str, paths), str(store), "--tile-size", str(TILE), *options)
        labelled.append(store)
    unlabelled = stores / "t19udp-aws.zarr"
    run("tile", str(data / "aws-l1c-tile" / "T19UDP_2017-07-29"), str(unlabelled),
        "--tile-size", str(TILE))  # fmt: skip
    return labelled, [unlabelled]


def best_val_loss(run: Path) -> float:
    """The validation loss of a fine-tuning's best.pt (its last epoch marked best)."""
    from cloudkit.train.metrics import read_metrics

    return [r["val_loss"] for r in read_metrics(run) if r.get("best")][-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
    parser.add_argument("--size", choices=("full", "quick"), default="full")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--seed", type=int, default=None, help="one seed instead of --seeds")
    parser.add_argument("--seeds", default=None, help="the seeds trained, all validated on the "
                        "first one's tiles; the run with the lowest val loss is shipped "
                        "(default: 0,1,2)")  # fmt: skip
    parser.add_argument("--inits", default="random")
    parser.add_argument("--fractions", default="100")
    parser.add_argument("--teacher", default=TEACHER, help="of the L1C sources, e.g. "
                        "ukis-csmask+dl-l8s2-uv (the two vote)")  # fmt: skip
    parser.add_argument("--hard-negatives", type=float, default=0.0)
    parser.add_argument("--best-by", choices=("loss", "iou"), default="loss", help="the epoch "
                        "each run keeps (iou: the recipe's rule before 2026-12-07)")  # fmt: skip
    parser.add_argument("--scl-vote", default="", help="a teacher that votes with SCL on the "
                        "L2A scenes, e.g. ukis-csmask (default: SCL alone)")  # fmt: skip
    args = parser.parse_args(argv)
    data, out = args.data.resolve(), args.out
    if not data.is_dir():
        print(f"recipe: the real samples are not at {data}", file=sys.stderr)
        return 1
    pre_epochs, pre_batch, ft_epochs, ft_batch = SCALES[(args.size, args.device)]
    wanted = set(args.inits.split(","))
    if not wanted or wanted - {"random", *PRETRAINING}:
        print(f"recipe: --inits {args.inits}: name random, deepcluster, moco", file=sys.stderr)
        return 1
    try:
        fractions = sorted({int(f) for f in args.fractions.split(",")})
    except ValueError:
        fractions = []
    if not fractions or not all(0 < f <= 100 for f in fractions):
        print(f"recipe: --fractions {args.fractions}: whole percentages in 1..100", file=sys.stderr)
        return 1
    if args.seed is not None and args.seeds is not None:
        print("recipe: --seed and --seeds: give one of them", file=sys.stderr)
        return 1
    try:
        if args.seeds is not None:
            seeds = [int(x) for x in args.seeds.split(",")]
        else:
            seeds = list(SEEDS) if args.seed is None else [args.seed]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        print(f"recipe: --seeds {args.seeds}: distinct whole numbers, e.g. 0,1,2", file=sys.stderr)
        return 1

    labelled, unlabelled = tile_sources(data, out, args.teacher, args.scl_vote)
    variant = "".join(
        [f"-{args.teacher}" if args.teacher != TEACHER else "",
         f"-scl+{args.scl_vote}" if args.scl_vote else "",
         f"-hard{args.hard_negatives:g}" if args.hard_negatives else ""]
    )  # fmt: skip
    # several seeds are validated on the first one's tiles, so their val losses compare
    split_seed = seeds[0] if len(seeds) > 1 else None
    losses: dict[Path, float] = {}
    for seed in seeds:
        own_split = split_seed in (None, seed)
        runs = out
        if (args.arch, seed, variant) != ("resnet18", SEED, ""):  # the shipped model's stays
            split = "" if own_split else f"-split{split_seed}"
            runs = out / "runs" / f"{args.arch}-s{seed}{variant}{split}"
        common = ["--device", args.device, "--seed", str(seed), "--arch", args.arch]
        split_tiles = [] if own_split else ["--split-seed", str(split_seed)]
        finetune = ["--task", "multi", "--any-bands", "--synthetic", "0.8",
                    "--resolutions", "10,60", "--epochs", str(ft_epochs),
                    "--batch-size", str(ft_batch), "--crop", str(TILE), "--lr", "1e-3",
                    "--freeze-epochs", "2", "--backbone-lr-scale", "0.5", "--patience", "0",
                    "--val-fraction", "0.1", "--best-by", args.best_by, "--workers", "0",
                    "--hard-negatives", f"{args.hard_negatives:g}", *common,
                    *split_tiles]  # fmt: skip
        for init in [i for i in ("random", *PRETRAINING) if i in wanted]:  # a start's runs together
            start = "random" if init == "random" else str(runs / f"pretrain-{init}" / "last.pt")
            if init != "random":
                train("pretrain", Path(start).parent, *map(str, labelled + unlabelled),
                      "--method", init, "--any-bands", "--epochs", str(pre_epochs),
                      "--batch-size", str(pre_batch), "--crop", "96", *PRETRAINING[init],
                      "--warmup-epochs", str(max(1, pre_epochs // 10)), "--workers", "1",
                      *common)  # fmt: skip
            for fraction in fractions:
                name = run_name(init, fraction)
                train("finetune", runs / name, *map(str, labelled), "--init", start,
                      "--fraction", f"{fraction / 100:g}", *finetune)  # fmt: skip
                if not (runs / f"{name}.pt").exists():
                    run("export", str(runs / name / "best.pt"), str(runs / f"{name}.pt"),
                        "--resolution", "20")  # fmt: skip
                if fraction == 100:  # the shipped model learns from every label
                    losses[runs / name] = best_val_loss(runs / name)
    if not losses:
        print(f"recipe done: runs in {out}")
        return 0

    chosen = min(losses, key=losses.__getitem__)
    print("validation loss: " + ", ".join(f"{_label(k, out)} {v:.4f}" for k, v in losses.items()))
    print(f"shipping {_label(chosen, out)}")
    shipped = chosen.parent / "default.pt"
    if len(seeds) > 1:  # one model for all the seeds, beside their folders
        shipped = (
            out / "default.pt"
            if (args.arch, variant) == ("resnet18", "")
            else (out / "runs" / f"{args.arch}{variant}-default.pt")
        )
    shutil.copyfile(chosen.parent / f"{chosen.name}.pt", shipped)
    print(f"recipe done: {shipped}")
    return 0


def _label(run: Path, out: Path) -> str:
    """A fine-tuning's folder relative to OUT, e.g. runs/resnet18-s1-split0/finetune-random."""
    return str(run.relative_to(out))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepFailed as err:
        print(err, file=sys.stderr)
        sys.exit(1)
