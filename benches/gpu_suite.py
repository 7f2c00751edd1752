"""Every GPU measurement in one command: pretraining, k-means, DDP, predict; one JSON, one table.

Runs the existing benches, each in its own process with its own timeout (a step that fails or
times out is recorded and the others still run), with the GPU arguments, and writes
OUT/gpu_suite.json (every figure, the environment, each step's command, status and last lines
of output) and OUT/gpu_suite.md (the table), both rewritten after every step; each step's whole
output is in OUT/logs/STEP.log. The steps after `prepare` share a budget of 8 minutes
(--budget 480): a step starts only with at least 10 s of it left, its timeout cut to what is
left. Without CUDA the suite stops at once with one line and exit code 1: it measures GPUs
only, never the CPU instead. It exits 1 too when a step failed, timed out or found no budget
left.

Steps, in order (`--dry-run` prints their exact commands):
  prepare            the inputs, made on the CPU once and cached in CLOUDKIT_BENCH_CACHE (default
                     ~/.cache/cloudkit/bench): the full synthetic L1C scene (10980 px, 600 MB,
                     minutes the first time), a 1098 px one, and a pretraining store of the real
                     T29UNU sample in ../shared/data (256 px tiles overlapping by 224: 1,551
                     tiles with data, a batch of 128 on each of up to 12 GPUs; 1.9 GB, 30 s).
                     Outside the budget
  pretrain-eager     bench_pretrain.py: MoCo and DeepCluster train-step images/s, views of 256 px,
                     batch 128, bf16 autocast, channels_last (what pretraining does on a GPU),
                     no torch.compile; beside them the loader's images/s: loader / step >= 1
                     means loading keeps the GPU busy
  kmeans             bench_kmeans.py --device cuda: DeepCluster's k-means, 100,000 x 128 unit
                     vectors, k 3000, 10 iterations, faiss's GPU index, and torch on the GPU
  predict-HEAD       bench_predict.py --size 10980 --device cuda --precisions bf16 --heads HEAD for
                     the light and U-Net heads and the shipped default model: end to end against
                     the decoding floor, and the model alone on the scene's windows on the GPU
  paper-crop         bench_predict.py --paper-crop 2048: the paper head on one 2048 px crop (run
                     beside a 1098 px scene, whose own figures are not kept)
  ddp                bench_pretrain.py under torchrun, one process per GPU, batch 128 each, no
                     compile; with one GPU it is recorded as "1 GPU: DDP not measured"
  pretrain-compiled  pretrain-eager with torch.compile: last, as compiling takes minutes

    python benches/gpu_suite.py --out gpu-suite         # on a machine with CUDA
    python benches/gpu_suite.py --dry-run               # the plan; needs no GPU
    python benches/gpu_suite.py --prepare               # the inputs alone; needs no GPU
    python benches/gpu_suite.py --out gpu-suite --only kmeans,paper-crop

Offline (a GPU machine with no network): carry a wheelhouse. Where the network is, on the same
platform and Python version as the GPU machine, with a Rust toolchain, in the checkout:

    python -m pip wheel --wheel-dir wheelhouse '.[ml,test]'  # cloudkit built, every dependency
    python benches/gpu_suite.py --prepare                    # optional: the cached inputs

then copy the checkout with its wheelhouse/, ../shared/data beside it (the T29UNU sample, for
the pretraining store) and, if made, ~/.cache/cloudkit/bench; on the GPU machine, in the checkout:

    python -m venv .venv && . .venv/bin/activate
    python -m pip install --no-index --find-links wheelhouse 'cloudkit[ml,test]'
    python benches/gpu_suite.py --out gpu-suite

PyPI's torch for Linux x86-64 is a CUDA build (`python -c "import torch; print(torch.version.cuda)"`
names its CUDA version, which the GPU machine's NVIDIA driver must support) and faiss-gpu (the
`ml` extra) is faiss with GPU support. Install cloudkit's wheel, not the checkout: `pip install
.` would build the Rust extension there, which needs maturin, Rust and the crates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
ROOT = BENCHES.parent
sys.path.insert(0, str(BENCHES))

from bench_tile import CACHE  # noqa: E402

BUDGET_S = 480  # the 8 minutes, for every step but prepare
SCENE_PX = 10980  # a full Sentinel-2 tile at 10 m
CROP_SCENE_PX = 1098  # the scene run beside the paper crop: small, its figures are not kept
STORE_TILE, STORE_OVERLAP = 256, 224
HEADS = ("light", "unet", "default")
MIN_STEP_S = 10  # a step is not started with less of the budget left
NO_CUDA = (
    "gpu_suite: CUDA is not available (torch.cuda.is_available() is False); "
    "this suite measures GPUs only"
)


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # what reads its figures and lays out its rows: a key of PARSERS and ROWS
    title: str
    cmd: tuple[str, ...] | None  # None: not run, `note` says why
    timeout: int
    figures: Path | None = None  # the JSON the bench writes (--json), if it has one
    note: str = ""
    budgeted: bool = True  # counts against --budget


def store_path() -> Path:
    return CACHE / f"t29unu-{STORE_TILE}-overlap{STORE_OVERLAP}.zarr"


def plan(out: Path, gpus: int, python: str = sys.executable) -> list[Step]:
    """The steps of the suite, in order, for a machine with ``gpus`` GPUs."""
    logs = out / "logs"

    def bench(script: str, *args: object) -> tuple[str, ...]:
        return (python, str(BENCHES / script), *map(str, args))

    def with_figures(name: str, kind: str, title: str, cmd: tuple, timeout: int) -> Step:
        """A step whose bench writes its figures to logs/NAME.json (--json)."""
        figures = logs / f"{name}.json"
        return Step(name, kind, title, (*cmd, "--json", str(figures)), timeout, figures)

    pretrain = bench(
        "bench_pretrain.py", "--device", "cuda", "--crop", 256, "--batch-size", 128, "--amp",
        "--methods", "moco,deepcluster", "--store", store_path(), "--steps", 20, "--warmup", 3,
    )  # fmt: skip
    kmeans = bench(
        "bench_kmeans.py", "--device", "cuda", "--n", 100_000, "--dim", 128, "--k", 3000,
        "--iters", 10, "--repeat", 3,
    )  # fmt: skip
    predict = ("--device", "cuda", "--precisions", "bf16")
    paper = bench(
        "bench_predict.py", "--size", CROP_SCENE_PX, *predict, "--heads", "light",
        "--decodes", "full", "--paper-crop", 2048,
    )  # fmt: skip
    # cheap and sure steps first, torch.compile (minutes of compiling) last: what the budget
    # cuts is then the compiled figure, not the others
    steps = [
        Step("prepare", "prepare", "inputs", bench("gpu_suite.py", "--prepare"), 900,
             budgeted=False),
        with_figures("pretrain-eager", "pretrain", "pretraining, compile off",
                     (*pretrain, "--no-compile"), 120),
        with_figures("kmeans", "kmeans", "DeepCluster k-means", kmeans, 60),
        *(with_figures(f"predict-{head}", "predict", f"predict, {head}",
                       bench("bench_predict.py", "--size", SCENE_PX, *predict, "--heads", head),
                       180 if head == "default" else 120)  # the default: a run per decoding
          for head in HEADS),
        with_figures("paper-crop", "paper-crop", "paper head, 2048 px crop", paper, 90),
    ]  # fmt: skip
    if gpus > 1:
        # how the project launches distributed pretraining: torchrun, one process per GPU
        torchrun = (python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node")
        cmd = (*torchrun, str(gpus), *pretrain[1:], "--no-compile")
        steps.append(with_figures("ddp", "pretrain", f"pretraining, DDP on {gpus} GPUs", cmd, 180))
    else:
        note = f"{gpus} GPU: DDP not measured"
        steps.append(Step("ddp", "pretrain", "pretraining, DDP", None, 0, note=note))
    steps.append(
        with_figures("pretrain-compiled", "pretrain", "pretraining, compile on",
                     (*pretrain, "--compile"), 180)
    )  # fmt: skip
    return steps


# ------------------------------------------------------------------------ running the steps


def run_step(step: Step, logs: Path, budget_left: float) -> dict:
    """Run one step in its own process group; its record, whatever happened."""
    record = {
        "name": step.name,
        "kind": step.kind,
        "title": step.title,
        "command": shlex.join(step.cmd) if step.cmd else None,
        "timeout_s": step.timeout,
        "status": "skipped",
        "note": step.note,
        "seconds": 0.0,
        "results": None,
    }
    if step.cmd is None:
        return record
    timeout = min(step.timeout, int(budget_left)) if step.budgeted else step.timeout
    if timeout < MIN_STEP_S:
        record.update(status="over-budget", note="the time budget (--budget) was spent")
        return record
    record["timeout_s"] = timeout
    print(f"\n[{step.name}] {record['command']}   (timeout {timeout} s)", flush=True)
    log = logs / f"{step.name}.log"
    if step.figures is not None:
        step.figures.unlink(missing_ok=True)  # a stale file must not pass for this run's figures
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a killed step's log ends where it stopped
    started = time.perf_counter()
    with open(log, "w") as sink:
        # a session of its own: a timeout kills the whole tree (torchrun's ranks, loaders)
        proc = subprocess.Popen(
            step.cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # timed out, ^C, or done: nothing the step started outlives it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    record["seconds"] = round(time.perf_counter() - started, 1)
    output = log.read_text(errors="replace")
    record["returncode"] = returncode
    record["output_tail"] = output.splitlines()[-40:]
    if returncode is None:
        record.update(status="timeout", note=f"killed after {timeout} s: {last_line(output)}")
    elif returncode != 0:
        record.update(status="failed", note=f"exit {returncode}: {last_line(output)}")
    else:
        try:
            record.update(status="ok", results=PARSERS[step.kind](output, step.figures))
        except (OSError, ValueError, KeyError) as err:
            record.update(status="failed", note=f"exit 0 but its figures are unreadable: {err}")
    print(f"[{step.name}] {record['status']} in {record['seconds']:.0f} s", flush=True)
    for what, result in rows(record):
        print(f"    {what}: {result}")
    return record


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# ------------------------------------------------------------------------ reading the figures


def _json_figures(output: str, figures: Path | None) -> dict:
    if figures is None or not figures.is_file():
        raise ValueError(f"it wrote no {figures}")
    return json.loads(figures.read_text())


def parse_paper_crop(output: str, figures: Path | None = None) -> dict:
    crop = _json_figures(output, figures).get("paper_crop")
    if crop is None:
        raise ValueError(f"{figures} holds no paper_crop")
    return crop


PARSERS = {
    "prepare": lambda output, figures: {},
    "pretrain": _json_figures,
    "kmeans": _json_figures,
    "predict": _json_figures,
    "paper-crop": parse_paper_crop,
}


# ------------------------------------------------------------------------ the table

METHODS = {"moco": "MoCo v2", "deepcluster": "DeepCluster v2"}
HEAD_NAMES = {"light": "light head", "unet": "U-Net head", "default": "default model (20 m)"}


def _pretrain_rows(r: dict) -> list[tuple[str, str]]:
    gpus = f", {r['world_size']} GPUs (DDP)" if r["world_size"] > 1 else ""
    per = " per GPU" if gpus else ""
    setup = (
        f"{r['crop']} px, batch {r['batch_size']}{per}, {'bf16' if r['amp'] else 'fp32'}, "
        f"{'channels_last, ' if r['channels_last'] else ''}"
        f"compile {'on' if r['compile'] else 'off'}{gpus}"
    )
    out = [
        (f"{METHODS.get(m, m)} train step ({setup})", f"{rate:,.0f} img/s")
        for m, rate in r["train_step_images_per_s"].items()
    ]
    if r.get("loader_images_per_s") is not None:
        ratios = r["loader_over_step"]
        verdict = "keeps the GPU busy" if min(ratios.values()) >= 1 else "the GPU waits for data"
        each = ", ".join(f"{x:.2f}x the {METHODS.get(m, m)} step" for m, x in ratios.items())
        out.append(
            (
                f"loader ({r['workers']} workers, {r['tiles']:,} tiles)",
                f"{r['loader_images_per_s']:,.0f} img/s, {each}: {verdict}",
            )
        )
    return out


def _kmeans_rows(r: dict) -> list[tuple[str, str]]:
    size = f"{r['n']:,} x {r['dim']}, k {r['k']}, {r['iterations']} iterations"
    return [
        (f"k-means, {b} on {r['device']}: {size} (best of {r['repeat']})", f"{s:.2f} s")
        for b, s in r["seconds"].items()
    ]


def _predict_rows(r: dict) -> list[tuple[str, str]]:
    decode = r["floors"]["decode"]["wall_s"]
    out = [
        ("decoding floor" + ("" if name == "decode" else f" ({name})"), f"{f['wall_s']:.1f} s")
        for name, f in r["floors"].items()
    ]
    for name, run in r["runs"].items():
        head, _, variant = name.partition("-")  # light-bf16, default-bf16-reduced
        out.append(
            (
                f"{HEAD_NAMES.get(head, head)} end to end, {variant}, {run['windows']} windows",
                f"{run['wall_s']:.1f} s wall, {run['over_decode']:.2f}x decode "
                f"({decode:.1f} s); read {run['read_s']:.1f}, preprocess "
                f"{run['preprocess_s']:.1f}, model {run['model_s']:.1f}, write "
                f"{run['write_s']:.1f} s; {run['model_windows_per_s']:.1f} windows/s model; "
                f"peak {run['peak_mb']:,.0f} MB",
            )
        )
    for head, only in (r.get("model_only") or {}).items():
        rate = only["windows"] / max(only["seconds"], 1e-9)
        out.append(
            (
                f"{HEAD_NAMES.get(head, head)} model only, {only['windows']} windows on the GPU",
                f"{only['seconds']:.2f} s ({rate:,.0f} windows/s)",
            )
        )
    return out


ROWS = {
    "prepare": lambda r: [("inputs", "made or found in the cache")],
    "pretrain": _pretrain_rows,
    "kmeans": _kmeans_rows,
    "predict": _predict_rows,
    "paper-crop": lambda r: [
        (f"paper head, one {r['crop']} x {r['crop']} px crop, forward", f"{r['seconds']:.2f} s")
    ],
}


def rows(record: dict) -> list[tuple[str, str]]:
    """(what, result) lines of one step's record."""
    status = record["status"]
    if status == "ok":
        return ROWS[record["kind"]](record["results"])
    label = {"failed": "FAILED", "timeout": "TIMED OUT", "over-budget": "NOT RUN"}
    label = label.get(status, "not run")
    return [(label, record["note"])]


def markdown(report: dict) -> str:
    """The table of a report (what gpu_suite.json holds)."""
    env = report["environment"]
    gpus = env.get("gpus") or []
    head = [
        f"GPU suite, {report['started']}: {len(gpus)} x {gpus[0] if gpus else 'no GPU'}, "
        f"torch {env.get('torch')} (CUDA {env.get('cuda')}), faiss {env.get('faiss')} "
        f"(GPUs: {env.get('faiss_gpus', 0)}), {env.get('cpus')} CPUs, commit "
        f"{env.get('commit') or 'unknown'}; {report['seconds']:.0f} s, budget {report['budget_s']} "
        "s (prepare excluded)",
        "",
        "| step | measurement | result |",
        "|---|---|---|",
    ]

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        f"| {cell(record['title'])} | {cell(what)} | {cell(result)} |"
        for record in report["steps"]
        for what, result in rows(record)
    ]
    return "\n".join(head + lines) + "\n"


# ------------------------------------------------------------------------ the whole suite


def environment(gpus: int) -> dict:
    import torch

    import cloudkit

    env = {
        "python": platform.python_version(),
        "cloudkit": cloudkit.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "cpus": len(os.sched_getaffinity(0)),
        "faiss": None,
        "faiss_gpus": 0,
        "commit": None,
    }
    try:
        import faiss

        env.update(faiss=faiss.__version__, faiss_gpus=int(faiss.get_num_gpus()))
    except ImportError:
        pass
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    if git.returncode == 0:
        env["commit"] = git.stdout.strip()
    return env


def run_suite(steps: list[Step], out: Path, env: dict, budget: float) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {
        "started": started,
        "budget_s": budget,
        "seconds": 0.0,
        "environment": env,
        "steps": [],
    }
    for step in steps:
        record = run_step(step, logs, budget - report["seconds"])
        report["steps"].append(record)
        if step.budgeted:
            report["seconds"] += record["seconds"]
        write_report(report, out)  # after every step: a killed suite leaves what it measured
    return report


def write_report(report: dict, out: Path) -> None:
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_suite.md").write_text(markdown(report))


def prepare() -> None:
    """Make the cached inputs (no GPU needed): the scenes and the pretraining store."""
    from bench_pretrain import build_store
    from bench_tile import product_for

    for size in (SCENE_PX, CROP_SCENE_PX):
        t0 = time.perf_counter()
        print(f"scene {size} px: {product_for(size)} ({time.perf_counter() - t0:.0f} s)")
    store = store_path()
    if not store.exists():
        # built aside, then renamed: a killed build never passes for a store
        with tempfile.TemporaryDirectory(dir=CACHE, prefix=".store-") as tmp:
            build_store(Path(tmp), STORE_TILE, STORE_OVERLAP).rename(store)
    print(f"pretraining store: {store}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_suite.json, .md and logs/")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--prepare", action="store_true", help="make the inputs (CPU) and stop")
    parser.add_argument("--only", help="comma-separated step names (prepare always runs)")
    parser.add_argument("--gpus", type=int, help="GPUs for DDP (default: all of them)")
    parser.add_argument("--budget", type=int, default=BUDGET_S, help="seconds for the steps")
    args = parser.parse_args()
    if args.prepare:
        prepare()
        return 0

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    present = torch.cuda.device_count()
    gpus = args.gpus or max(present, 1)
    if not args.dry_run and gpus > present:
        parser.error(f"--gpus {gpus} but {present} CUDA device(s) are present")
    if args.out is None and not args.dry_run:
        parser.error("--out DIR is needed: where the results go")
    steps = plan(args.out or Path("OUT"), gpus)
    if args.only:
        wanted = set(args.only.split(","))
        if unknown := wanted - {s.name for s in steps}:
            parser.error(f"--only: no step {', '.join(sorted(unknown))}")
        steps = [s for s in steps if s.name in wanted or s.name == "prepare"]
    if args.dry_run:
        for step in steps:
            budget = "" if step.budgeted else ", outside the budget"
            if step.cmd is None:
                print(f"{step.name}: not run ({step.note})")
            else:
                print(f"{step.name} (timeout {step.timeout} s{budget}): {shlex.join(step.cmd)}")
        return 0
    report = run_suite(steps, args.out, environment(gpus), args.budget)
    print(f"\n{args.out / 'gpu_suite.json'}, {args.out / 'gpu_suite.md'}:\n")
    print(markdown(report))
    # skipped by design (DDP on one GPU) is fine; failed, timed out or over budget is not
    return 0 if all(r["status"] in ("ok", "skipped") for r in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
