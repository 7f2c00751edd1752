"""`cloudkit tile --cluster` and `cloudkit predict --cluster`: scenes spread over a Dask
cluster, one scene per task.

The client finds the scenes (headers only) and submits one task per scene; each worker
process runs the scene exactly as one machine does (`pipeline.run.run_scene` through the
command's writer: a `StoreWriter` into the shared tile store, a `PredictionWriter` with the
model the worker loaded on its first scene): the same skip of a scene the output holds, the
same failure of one scene in one line while the others go on, the same atomic outputs, so a
worker killed mid-scene leaves nothing that looks written and Dask runs the task again on
another worker. Results come back as scenes finish.

``--cluster local:N`` starts N worker processes on this machine (the tests use it), each
with an equal share of the cores; with several GPUs each worker takes one, round robin.
``--cluster tcp://HOST:PORT`` (or ``dask://HOST:PORT``) joins a running Dask scheduler: its
workers need cloudkit installed and the scenes and the output folder at the same paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from cloudkit.config import PredictOptions, TileOptions, default_threads
from cloudkit.errors import CloudkitError, OptionError
from cloudkit.io.discover import discover_scenes
from cloudkit.io.location import is_url, location_of
from cloudkit.io.scene import Scene
from cloudkit.models.zoo import load_predictor
from cloudkit.pipeline.run import FAILED, Progress, SceneResult, Summary, run_scene
from cloudkit.tiler.writer import StoreWriter

#: how often Dask runs a task again after the worker running it died (kill -9, out of memory)
TASK_RETRIES = 2


#: local worker processes per core at most, as for a training run's ``--workers``: beyond a
#: few per core (to hide slow storage) more processes only fork and share the same cores
WORKERS_PER_CORE = 4


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """("local", N) or ("remote", "tcp://HOST:PORT"); OptionError for anything else, and for
    more local workers than :data:`WORKERS_PER_CORE` per core this process may use."""
    if spec.startswith("local:"):
        count = spec.removeprefix("local:")
        if count.isdigit() and int(count) >= 1:
            cores = len(os.sched_getaffinity(0))
            if int(count) > WORKERS_PER_CORE * cores:
                raise OptionError(
                    f"--cluster {spec}: more than {WORKERS_PER_CORE} worker processes per core "
                    f"({cores} cores here); give at most local:{WORKERS_PER_CORE * cores}"
                )
            return "local", int(count)
    elif spec.startswith(("tcp://", "dask://")):
        address = "tcp://" + spec.split("://", 1)[1]
        if address.rsplit(":", 1)[-1].isdigit():
            return "remote", address
    raise OptionError(
        f"--cluster {spec}: expected local:N (N worker processes here) or tcp://HOST:PORT "
        "(a running Dask scheduler)"
    )


@contextlib.contextmanager
def dask_client(spec: str) -> Iterator:
    """A distributed Client for ``spec``; a local cluster is closed on leaving."""
    kind, where = parse_cluster(spec)
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise OptionError(
            f"--cluster {spec} needs Dask's distributed scheduler: pip install 'cloudkit[cluster]'"
        ) from None
    if kind == "remote":
        try:
            client = Client(where, timeout="20s")
        except OSError as err:
            raise OptionError(
                f"--cluster {spec}: no Dask scheduler answers there ({err})"
            ) from None
        with client:
            yield client
        return
    threads = str(max(1, default_threads() // int(where)))
    # Dask starts workers with one OpenMP thread and glibc returning freed memory to the
    # system at once (each row's arrays would be mapped and unmapped again): a worker is to
    # run a scene with its share of the cores, as one process does
    environ = {"OMP_NUM_THREADS": threads, "CLOUDKIT_NUM_THREADS": threads}
    # Dask lets this process's own environment win over that setting: an OMP_NUM_THREADS=2
    # here would give every worker two threads, and 2 workers on 2 cores ran 1.8x slower
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), _environ(environ):
        cluster = LocalCluster(
            n_workers=int(where),
            threads_per_worker=1,  # one scene at a time per process: its decoding lanes and
            processes=True,  # torch threads are the parallelism inside it
            dashboard_address=None,
        )
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """This process's environment with ``values``, restored after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def predict_on_cluster(
    paths: Sequence[Path],
    model: str,
    load_options: dict,
    out_dir: Path | str,
    options: PredictOptions,
    spec: str,
    progress: Progress | None = None,
) -> Summary:
    """Every scene under ``paths`` predicted on the cluster ``spec``; results in scene
    order, each scene's failure in its result (the run goes on)."""
    out = out_dir if is_url(out_dir) else Path(out_dir).absolute()
    location_of(out).check_reachable()  # one line now, not one per scene on the workers
    scenes = discover_scenes([Path(p) for p in paths])
    task = (_predict_scene, model, load_options, out, options)
    return _run_on_cluster(scenes, task, spec, progress, "predict")


def tile_on_cluster(
    paths: Sequence[Path],
    out: Path | str,
    options: TileOptions,
    spec: str,
    progress: Progress | None = None,
) -> Summary:
    """Every scene under ``paths`` tiled into the store ``out`` on the cluster ``spec``, the
    workers committing into it at once (`io/store/`); results in scene order, each scene's
    failure in its result. Bad options stop here, before any scene, and the store is
    created here from the first scene that plans, as one machine creates it: not from
    whichever scene a worker happens to finish first."""
    parse_cluster(spec)  # a bad --cluster stops before the store is made
    scenes = discover_scenes([Path(p) for p in paths], scl_labels=options.scl_labels)
    with StoreWriter(out, options) as writer:
        for scene in scenes:
            try:
                writer.plan(scene)
                break
            except CloudkitError:
                continue  # its task fails it, in one line
    out = out if is_url(out) else Path(out).absolute()
    return _run_on_cluster(scenes, (_tile_scene, out, options), spec, progress, "tile")


def _run_on_cluster(
    scenes: Sequence[Scene], task: tuple, spec: str, progress: Progress | None, name: str
) -> Summary:
    """``task`` (a function and its arguments after the scene) run for each scene, one Dask
    task per scene, retried when its worker dies."""
    progress = progress or Progress()
    progress.scenes_found(len(scenes))
    results: dict[str, SceneResult] = {}
    function, *args = task
    with dask_client(spec) as client:
        from distributed import as_completed  # dask_client said so if it is not installed

        futures = {
            client.submit(
                function, scene, *args, key=f"cloudkit-{name}-{k}-{scene.scene_id}",
                retries=TASK_RETRIES, pure=False,
            ): scene
            for k, scene in enumerate(scenes)
        }  # fmt: skip
        for future in as_completed(futures):
            scene = futures[future]
            result = _result_of(future, scene)
            results[scene.scene_id] = result
            progress.scene_finished(result)
    return Summary([results[s.scene_id] for s in scenes])


def _result_of(future, scene: Scene) -> SceneResult:
    """The task's SceneResult; a task that failed outside cloudkit's own errors (its worker
    died more often than TASK_RETRIES allows) becomes the scene's failure."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - Dask's KilledWorker, a lost scheduler
        reason = " ".join(str(err).split()) or type(err).__name__
        return SceneResult(scene.scene_id, FAILED, error=f"on the cluster: {reason}")


# ------------------------------------------------------------------------ on a worker

_PREDICTORS: dict = {}


def _predict_scene(
    scene: Scene, model: str, load_options: dict, out_dir: Path | str, options: PredictOptions
) -> SceneResult:
    """One scene on a worker; the worker's model is loaded on its first scene."""
    from cloudkit.predict.writer import PredictionWriter

    load_options = {**load_options, "device": _worker_device(load_options.get("device"))}
    key = (model, tuple(sorted(load_options.items())))
    try:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = load_predictor(model, **load_options)
        with PredictionWriter(_PREDICTORS[key], out_dir, options) as writer:
            return run_scene(scene, writer, Progress())
    except CloudkitError as err:  # the model cannot load here, say
        return SceneResult(scene.scene_id, FAILED, error=str(err))


def _tile_scene(scene: Scene, out: Path | str, options: TileOptions) -> SceneResult:
    """One scene on a worker, written into its own scratch store and committed into ``out``
    beside the other workers' scenes."""
    try:
        with StoreWriter(out, options) as writer:
            return run_scene(scene, writer, Progress())
    except CloudkitError as err:  # the teacher cannot load here, say
        return SceneResult(scene.scene_id, FAILED, error=str(err))


def _worker_device(device: str | None) -> str:
    """With several GPUs, worker k of a local cluster takes GPU k mod count."""
    import torch

    device = device or "auto"
    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    count = torch.cuda.device_count()
    if count < 2:
        return device
    from distributed import get_worker

    name = str(get_worker().name)
    index = int(name) if name.isdigit() else os.getpid()
    return f"cuda:{index % count}"
