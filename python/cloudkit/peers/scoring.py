"""Score a peer model (ukis-csmask, s2cloudless) against a store's labels, as a checkpoint is.

The peer reads the store's own tiles: reflectance of its bands (NaN where a band has no data),
for each scene the network of its processing level (`io/level.py`, from the store's scenes/
table). Its classes become label codes by its own rule (`Peer.label_codes`), then the task's
classes through the task's table, exactly as store labels do. Pixels count where the tile is
valid and the label is known for the task, as for `evaluate_checkpoint`; tiles without any
such pixel are skipped. A task whose classes the peer does not tell apart is refused
(`Peer.check_task`: s2cloudless has no shadow class, ukis-csmask no thin cloud).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cloudkit.data.reflectance import ValueScale
from cloudkit.data.tasks import IGNORE, get_task
from cloudkit.errors import StoreError
from cloudkit.eval.metrics import ConfusionAccumulator, class_metrics
from cloudkit.io.datasets import stored_scene_level
from cloudkit.io.level import require_level
from cloudkit.io.store import StoreReader
from cloudkit.peers.registry import Peer, get_peer


def evaluate_peer(
    stores: Sequence[Path],
    *,
    peer: str,
    task: str,
    batch_size: int = 16,
    tiles: Sequence[int] | None = None,
) -> dict:
    """Metrics of the peer called ``peer`` on the labelled tiles of ``stores`` for ``task``.

    ``tiles``: only these tile indices of every store. Returns :func:`class_metrics` output
    plus ``reference`` (name and version), ``licence``, ``task``, ``stores`` and ``tiles``.
    """
    the_task = get_task(task)
    model = get_peer(peer, option="--reference")
    model.check_task(the_task)
    if not stores:
        raise StoreError("no tile store given; pass at least one store made by `cloudkit tile`")
    acc = ConfusionAccumulator(the_task.num_classes)
    scored = 0
    for path in map(Path, stores):
        store = StoreReader.open(path)
        store.require_labels()
        for level, rows in _rows_by_level(store, model, tiles):
            bands = model.bands_for(store.bands, level, what=f"store {path}")
            index = [store.bands.index(b) for b in bands]
            values = ValueScale(
                tuple(store.scale[i] for i in index), tuple(store.offset[i] for i in index)
            )
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                target = the_task.lut[store.tiles("labels", batch)[:, 0]]
                valid = store.tiles("valid", batch)
                target[valid[:, 0] == 0] = IGNORE
                known = (target != IGNORE).any(axis=(1, 2))
                if not known.any():
                    continue
                images = store.tiles("images", batch[known])[:, index]
                refl = values.reflectance_or_nan(images, valid[known])
                probs = model.probabilities(refl, bands, level, resolution=store.resolution)
                codes = model.label_codes(probs)
                acc.update(the_task.lut[codes], target[known])
                scored += int(known.sum())
    result = class_metrics(acc.matrix, the_task.classes)
    result.update(
        {
            "reference": f"{model.name} {model.version()}",
            "licence": model.card.licence,
            "task": the_task.name,
            "stores": [str(s) for s in stores],
            "tiles": scored,
        }
    )
    return result


def _rows_by_level(
    store: StoreReader, model: Peer, tiles: Sequence[int] | None
) -> list[tuple[str, np.ndarray]]:
    """(level, tile rows with valid pixels) for each level among the store's scenes."""
    if store.num_scenes == 0:
        raise StoreError(
            f"{store.path}: store has no scenes/ table, so the processing level of its tiles is "
            f"unknown and {model.name} cannot pick its network; score a store made by "
            "`cloudkit tile`"
        )
    columns = {name: store.scenes(name) for name in ("layout", "id", "path")}
    levels = [
        require_level(
            stored_scene_level(str(layout), str(scene_id), str(path), store.bands),
            str(scene_id),
            f"--reference {model.name}",
        )
        for layout, scene_id, path in zip(*columns.values(), strict=True)
    ]
    scene_of = store.index("tile_scene")
    keep = store.index("valid_fraction") > 0
    if tiles is not None:
        chosen = np.zeros_like(keep)
        chosen[np.asarray(tiles, dtype=np.int64)] = True
        keep &= chosen
    by_level = np.asarray(levels)[scene_of]
    return [
        (level, np.flatnonzero(keep & (by_level == level)))
        for level in sorted(set(levels))
        if (keep & (by_level == level)).any()
    ]
