"""`cloudkit predict` end to end, split into read / preprocess / model / write, against the
decoding floor of the same scene, each configuration in its own process (wall time, peak RSS).

Scenes:
  default       the real L2A product T29UNU at 60 m (its 11 R60m bands), ../shared/data
  --size N      a synthetic L1C .SAFE of N x N pixels at 10 m (cloudkit.sample.synthetic: lossless
                JPEG 2000 tiled 1024, texture that compresses like real scenes), predicted at
                10 m with all 13 bands; --size 10980 is a full scene, cached in
                ~/.cache/cloudkit/bench (shared with bench_tile.py)

Runs, each a separate process:
  decode        the scene's band files read through cloudkit's decoding lanes (SceneRows),
                row range by row range as prediction reads them: the floor for end to end
  decode-20m-reduced   (--size only) the same at 20 m, the 10 m bands decoded at their
                JPEG 2000 resolution level 1 (what predict reads for a 20 m model)
  HEAD-PREC     `predict_paths` with each head of --heads (light, unet) and each precision
                (fp32, bf16; +compile with --compile), channels_last; the per-stage split
                comes from the scene's JSON. The head ``default`` is the model shipped with
                cloudkit, run as `cloudkit predict` runs it: at its own resolution (20 m),
                its any-band stem reading the scene's bands. Runs at a resolution coarser
                than the scene's (the default model; --predict-resolution 20) are made with
                each of --decodes (full: every pixel decoded and averaged; reduced: JPEG 2000
                resolution levels, predict's default)

The models are seeded, untrained ResNet-18 segmenters with the scene's bands: speed does not
depend on the weights. On a GPU (``--device cuda``) the script also reports the model alone
on a scene's worth of windows already on the device, and the paper head on a crop
(``--paper-crop 2048``).

    python benches/bench_predict.py                       # T29UNU at 60 m, CPU
    python benches/bench_predict.py --size 10980 --precisions bf16 --heads light,unet
    python benches/bench_predict.py --size 10980 --precisions bf16 --heads light,default
    python benches/bench_predict.py --size 10980 --precisions bf16 --heads default --json r.json
    python benches/bench_predict.py --size 10980 --device cuda --paper-crop 2048
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the project root: tests.helpers

from bench_tile import measure, product_for  # noqa: E402

ALL_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
)  # fmt: skip


def scene_and_bands(size: int | None) -> tuple[Path, float, tuple[str, ...]]:
    if size is None:
        from tests.helpers.shared_data import L2A_T29UNU, T29UNU_60M_BANDS

        return L2A_T29UNU, 60.0, T29UNU_60M_BANDS
    return product_for(size), 10.0, ALL_BANDS


def write_model(path: Path, bands: tuple[str, ...], head: str = "unet") -> Path:
    import torch

    from cloudkit.models.checkpoint import FINE_TUNING
    from cloudkit.models.encoder import Encoder
    from cloudkit.models.segmentation import build_segmenter, segmenter_state

    torch.manual_seed(0)
    model = build_segmenter(Encoder(bands), head=head, num_classes=2, binary=True)
    payload = {
        **FINE_TUNING.header(),
        "model": segmenter_state(model, task="cloud"),
        "task": "cloud",
        "normalisation": {"kind": "store-reflectance"},
        "tile_size": 384,
    }
    torch.save(payload, path)
    return path


def shipped_weights() -> Path:
    from cloudkit.models.zoo import DEFAULT, shipped_model, verified_weights

    model = shipped_model(DEFAULT)
    if model is None:
        raise SystemExit("this cloudkit ships no default model")
    return verified_weights(model)


# ------------------------------------------------------------------------ child processes


def child_decode(args) -> dict:
    from cloudkit.io.discover import discover_scenes
    from cloudkit.io.grid import plan_grid
    from cloudkit.io.scene_rows import SceneRows

    (scene,) = discover_scenes([Path(args.scene)])
    resolution = args.predict_resolution or args.resolution
    plan = plan_grid(scene, resolution=resolution, bands=args.bands.split(","), decode=args.decode)
    window, overlap = args.window, args.overlap
    started = time.perf_counter()
    with SceneRows(plan, workers=args.workers or os.cpu_count()) as rows:
        for y0 in range(0, plan.height, window - overlap):
            rows.read(y0, min(window, plan.height - y0))
            if y0 + window >= plan.height:
                break
    return {"seconds": time.perf_counter() - started}


def child_predict(args) -> dict:
    import torch

    from cloudkit.config import Decode, PredictOptions
    from cloudkit.predict.model import CheckpointPredictor
    from cloudkit.predict.writer import predict_paths

    torch.set_num_threads(args.workers or os.cpu_count())
    predictor = CheckpointPredictor(
        Path(args.model), device=args.device, precision=args.precision, compile=args.compile
    )
    options = PredictOptions(
        # shipped: its own resolution
        resolution=None if args.shipped else (args.predict_resolution or args.resolution),
        decode=Decode(args.decode),
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        workers=args.workers,
        overwrite=True,
        shadows=args.shadow_check,
    )
    with tempfile.TemporaryDirectory(dir=args.tmp) as out:
        (result,) = predict_paths([Path(args.scene)], predictor, Path(out), options).results
    if result.status != "predicted":
        raise SystemExit(f"prediction failed: {result.error}")
    return {**result.summary["timings"], "windows": result.windows, "seconds": result.seconds}


def child_model_only(args) -> dict:
    """The model alone on ``args.windows`` windows already on the device (bf16 autocast)."""
    import torch

    from cloudkit.predict.model import CheckpointPredictor

    predictor = CheckpointPredictor(Path(args.model), device=args.device, precision=args.precision)
    c, t = len(args.bands.split(",")), args.window
    x = torch.rand(args.batch_size, c, t, t, device=predictor.device) * 0.3
    predictor.probabilities(x)  # warm-up: cuDNN autotuning, allocations
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(0, args.windows, args.batch_size):
        predictor.probabilities(x)
    return {"seconds": time.perf_counter() - started, "windows": args.windows}


def child_paper_crop(args) -> dict:
    import torch

    from cloudkit.predict.model import CheckpointPredictor

    predictor = CheckpointPredictor(Path(args.model), device=args.device, precision=args.precision)
    c, t = len(args.bands.split(",")), args.paper_crop
    x = torch.rand(1, c, t, t, device=predictor.device) * 0.3
    predictor.probabilities(x)
    started = time.perf_counter()
    predictor.probabilities(x)
    return {"seconds": time.perf_counter() - started}


CHILDREN = {
    "decode": child_decode,
    "predict": child_predict,
    "model-only": child_model_only,
    "paper-crop": child_paper_crop,
}


# ------------------------------------------------------------------------ the parent


def run_child(kind: str, common: list[str], extra: list[str], result_file: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--result", str(result_file), *common]
    seconds, peak_mb = measure(cmd + extra)
    result = json.loads(result_file.read_text())
    return {**result, "wall": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="synthetic 10 m scene size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--heads", default="light,unet", help="comma-separated heads")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--window", type=int, default=384)
    parser.add_argument("--overlap", type=int, default=None, help="default: predict's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--paper-crop", type=int, default=0)
    parser.add_argument(
        "--predict-resolution", type=float, default=None, help="default: the scene's own"
    )
    parser.add_argument("--decodes", default="full,reduced", help="for coarser predictions")
    parser.add_argument(
        "--shadows",
        default="geometric",
        help="predict's --shadows values to run (comma-separated): geometric,model times the "
        "shadow check",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    # child-only arguments
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--bands", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--shipped", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--shadow-check", default="geometric", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(CHILDREN[args.child](args)))
        return

    if args.overlap is None:
        from cloudkit.config import default_overlap

        args.overlap = default_overlap(args.window)
    scene, resolution, bands = scene_and_bands(args.size)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        heads = args.heads.split(",")
        models = {
            head: shipped_weights()
            if head == "default"
            else write_model(tmp / f"{head}.pt", bands, head)
            for head in heads
        }
        common = [
            "--scene", str(scene), "--resolution", str(resolution), "--bands", ",".join(bands),
            "--window", str(args.window), "--overlap", str(args.overlap),
            "--batch-size", str(args.batch_size), "--device", args.device, "--tmp", str(tmp),
        ]  # fmt: skip
        if args.workers:
            common += ["--workers", str(args.workers)]
        scene_args = list(common)  # at the scene's own resolution
        coarser = args.predict_resolution is not None and args.predict_resolution > resolution
        if coarser:
            common += ["--predict-resolution", str(args.predict_resolution)]
        print(f"scene {scene.name} at {resolution:g} m, {len(bands)} bands, device {args.device}")
        print(f"window {args.window}, overlap {args.overlap}, batch {args.batch_size}")
        floor = run_child("decode", scene_args, [], tmp / "decode.json")
        print(f"decode (floor)        {floor['wall']:7.1f} s wall  peak {floor['peak_mb']:6.0f} MB")
        floors = {"decode": floor}
        if args.size and "reduced" in args.decodes.split(","):
            extra = ["--predict-resolution", "20", "--decode", "reduced"]
            r = run_child("decode", scene_args, extra, tmp / "decode-20.json")
            floors["decode-20m-reduced"] = r
            print(
                f"decode-20m-reduced    {r['wall']:7.1f} s wall  peak {r['peak_mb']:6.0f} MB  "
                f"{r['wall'] / floor['wall']:.2f}x decode"
            )
        runs = {}
        names = []
        for head in heads:
            for precision in args.precisions.split(","):
                extra = ["--model", str(models[head]), "--precision", precision]
                extra += ["--shipped"] if head == "default" else []
                decodes = args.decodes.split(",") if head == "default" or coarser else ["full"]
                checks = args.shadows.split(",")
                for decode in decodes:
                    for check in checks:
                        name = f"{head}-{precision}" + (f"-{decode}" if len(decodes) > 1 else "")
                        name += f"-shadows-{check}" if len(checks) > 1 else ""
                        more = [*extra, "--decode", decode, "--shadow-check", check]
                        names.append((name, more))
                        if args.compile:
                            names.append((f"{name}+compile", [*more, "--compile"]))
        for name, more in names:
            r = run_child("predict", common, more, tmp / f"{name}.json")
            runs[name] = r
            print(
                f"{name:<21} {r['wall']:7.1f} s wall  peak {r['peak_mb']:6.0f} MB  "
                f"read {r['read_s']:.1f} preprocess {r['preprocess_s']:.1f} "
                f"model {r['model_s']:.1f} shadows {r.get('shadows_s', 0.0):.1f} "
                f"write {r['write_s']:.1f} s  "
                f"{r['windows']} windows, {r['windows'] / r['total_s']:.1f} windows/s end to "
                f"end ({r['windows_per_s']:.1f}/s model)  {r['wall'] / floor['wall']:.2f}x "
                "decode"
            )
        model_only, paper_crop = {}, None
        if args.device != "cpu":
            windows = max(r["windows"] for r in runs.values())
            precision = args.precisions.split(",")[0]
            for head in heads:
                extra = ["--model", str(models[head]), "--precision", precision]
                extra += ["--windows", str(windows)]
                r = run_child("model-only", common, extra, tmp / f"model-only-{head}.json")
                model_only[head] = {"windows": windows, "seconds": r["seconds"]}
                print(
                    f"model only ({head}, {precision}), {windows} windows on the device: "
                    f"{r['seconds']:.2f} s  peak RSS {r['peak_mb']:.0f} MB"
                )
        if args.paper_crop:
            paper = write_model(tmp / "paper.pt", bands, head="paper")
            extra = ["--model", str(paper), "--paper-crop", str(args.paper_crop)]
            r = run_child("paper-crop", common, extra, tmp / "paper.json")
            paper_crop = {"crop": args.paper_crop, "seconds": r["seconds"]}
            print(
                f"paper head, one {args.paper_crop}^2 crop: {r['seconds']:.2f} s  "
                f"peak RSS {r['peak_mb']:.0f} MB"
            )
        for head in heads:
            if f"{head}-fp32" in runs and f"{head}-bf16" in runs:
                ratio = runs[f"{head}-fp32"]["model_s"] / runs[f"{head}-bf16"]["model_s"]
                print(f"{head}: model time fp32 / bf16: {ratio:.2f}x")
        for precision in args.precisions.split(","):
            pair = [runs.get(f"{head}-{precision}") for head in ("unet", "light")]
            if all(pair):
                ratio = pair[0]["model_s"] / pair[1]["model_s"]
                print(f"{precision}: model time unet / light: {ratio:.2f}x")
        best = min(runs.values(), key=lambda r: r["wall"])
        print(f"best end to end / decode floor: {best['wall'] / floor['wall']:.2f}x")
        if args.json:
            figures = {
                "scene": scene.name,
                "resolution": resolution,
                "floors": {name: _floor_figures(f) for name, f in floors.items()},
                "runs": {name: _run_figures(r, floor) for name, r in runs.items()},
                "model_only": model_only,
                "paper_crop": paper_crop,
            }
            args.json.write_text(json.dumps(figures, indent=1))


def _floor_figures(r: dict) -> dict:
    return {"wall_s": r["wall"], "peak_mb": r["peak_mb"]}


def _run_figures(r: dict, floor: dict) -> dict:
    """One predict run as --json writes it (what gpu_suite.py's table reads)."""
    return {
        **_floor_figures(r),
        **{k: r[k] for k in ("read_s", "preprocess_s", "model_s", "write_s", "windows")},
        "shadows_s": r.get("shadows_s", 0.0),
        "windows_per_s": r["windows"] / r["total_s"],  # end to end
        "model_windows_per_s": r["windows_per_s"],
        "over_decode": r["wall"] / floor["wall"],
    }


if __name__ == "__main__":
    main()
