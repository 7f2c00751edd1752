"""Predict's outputs in object storage: each scene is written locally as usual
(`output.py`: partial names, COGs built whole), then uploaded one whole object at a time, the
JSON summary last. As on disk, a scene is complete exactly when its summary and mask exist,
so a run killed during an upload leaves a scene that the next run predicts again."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

from cloudkit.io.location import location_of
from cloudkit.predict.output import OutputPaths, output_paths


class RemoteOutputs:
    """The outputs of the scenes of one run to ``s3://BUCKET/PREFIX``, staged in a local
    folder of this run's own."""

    def __init__(self, url: str) -> None:
        self.location = location_of(url)
        self.staging = Path(tempfile.mkdtemp(prefix="cloudkit-predict-"))

    def paths(self, scene_id: str) -> OutputPaths:
        """The URLs of a scene's outputs."""
        local = output_paths(self.staging, scene_id)
        names = {f.name: getattr(local, f.name).name for f in fields(OutputPaths)}
        return OutputPaths(**{k: f"{self.location}/{v}" for k, v in names.items()})  # type: ignore[arg-type]

    def is_complete(self, scene_id: str) -> bool:
        local = output_paths(self.staging, scene_id)
        return self.location.exists(local.summary.name) and self.location.exists(local.mask.name)

    def summary(self, scene_id: str) -> bytes | None:
        return self.location.read(output_paths(self.staging, scene_id).summary.name)

    def publish(self, local: OutputPaths) -> OutputPaths:
        """Upload a scene's finished local outputs (the summary last: until then the scene
        is incomplete there too); an earlier run's optional outputs that this run did not
        write are removed. Returns their URLs."""
        location = self.location
        location.delete(local.summary.name)
        for kind in ("mask", "probabilities", "quicklook"):
            file = getattr(local, kind)
            if file.is_file():
                location.move_in(file, file.name)
            else:
                location.delete(file.name)
        location.move_in(local.summary, local.summary.name)
        return self.paths(local.mask.name.removesuffix("_mask.tif"))

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
