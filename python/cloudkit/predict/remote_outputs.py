"""Predict's outputs in object storage: each scene is written locally as usual
(`output.py`: partial names, COGs built whole), then uploaded one whole object at a time, the
JSON summary last. As on disk, a scene is finished once its summary is there, so a run
killed during an upload leaves a scene that the next run predicts again. The
summary records what each upload left (`seal.py`), so that a re-run finds an output deleted
or replaced since with a HEAD of each, without downloading it."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import cast

from cloudkit.files.jsonfile import write_json
from cloudkit.io.location import S3Location, location_of
from cloudkit.predict.output import OutputPaths, output_paths
from cloudkit.predict.seal import object_damage, with_objects


class RemoteOutputs:
    """The outputs of the scenes of one run to ``s3://BUCKET/PREFIX``, staged in a local
    folder of this run's own."""

    def __init__(self, url: str) -> None:
        # an s3:// URL: location_of refuses every other URL
        self.location = cast(S3Location, location_of(url))
        # a missing bucket or credentials: one line now, not one per scene after decoding it
        self.location.check_reachable()
        self.staging = Path(tempfile.mkdtemp(prefix="cloudkit-predict-"))

    def paths(self, scene_id: str) -> OutputPaths:
        """The URLs of a scene's outputs."""
        local = output_paths(self.staging, scene_id)
        names = {f.name: getattr(local, f.name).name for f in fields(OutputPaths)}
        return OutputPaths(**{k: f"{self.location}/{v}" for k, v in names.items()})  # type: ignore[arg-type]

    def summary(self, scene_id: str) -> bytes | None:
        """The scene's summary, None until a run finished the scene (it is uploaded last)."""
        return self.location.read(output_paths(self.staging, scene_id).summary.name)

    def damage(self, scene_id: str, summary: bytes) -> str | None:
        """What is wrong with the objects the scene's ``summary`` vouches for, or None."""
        names = output_paths(self.staging, scene_id)
        if not self.location.exists(names.mask.name):  # a summary of any age needs its mask
            return f"{names.mask.name} is missing"
        return object_damage(summary, names.summary.name, self.location.head)

    def publish(self, local: OutputPaths) -> OutputPaths:
        """Upload a scene's finished local outputs (the summary last: until then the scene
        is incomplete there too), the summary recording what each upload left; an earlier
        run's optional outputs that this run did not write are removed. Returns their URLs."""
        location = self.location
        location.delete(local.summary.name)
        uploaded = {}
        for kind in ("mask", "probabilities", "quicklook"):
            file = getattr(local, kind)
            if file.is_file():
                uploaded[kind] = location.upload(file, file.name)
            else:
                location.delete(file.name)
        summary = json.loads(local.summary.read_text(encoding="utf-8"))
        write_json(with_objects(summary, uploaded), local.summary)
        location.move_in(local.summary, local.summary.name)
        return self.paths(local.mask.name.removesuffix("_mask.tif"))

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
