"""Score a fine-tuned checkpoint on the labelled tiles of one or more tile stores.

Every tile with labels is predicted whole (no crops; the U-Net head pads to a multiple of 32
itself) and the confusion matrix is accumulated over the pixels that are both valid (every
band has data) and labelled for the checkpoint's task; no-data is never scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cloudkit.data.tasks import IGNORE, get_task, task_targets
from cloudkit.errors import OptionError, StoreError
from cloudkit.eval.metrics import ConfusionAccumulator, class_metrics
from cloudkit.eval.reference import evaluate_reference
from cloudkit.eval.shadow_check import StoreSuns, TileChecker, require_checkable
from cloudkit.files.jsonfile import write_json
from cloudkit.io.store import StoreReader
from cloudkit.models.band_slots import check_any_band_input
from cloudkit.models.losses import predict_classes

__all__ = ["evaluate_checkpoint", "evaluate_reference", "write_json"]


def evaluate_checkpoint(
    checkpoint: Path,
    stores: Sequence[Path],
    *,
    batch_size: int = 16,
    device: str = "auto",
    tiles: Sequence[int] | None = None,
    shadows: str = "model",
) -> dict:
    """Metrics of the checkpoint's segmenter on the labelled tiles of ``stores``.

    ``tiles``: indices into the tiles of all stores (in store order, tiles with any valid
    pixel) to score only those. ``shadows`` "geometric": the predict-time shadow check on
    each tile first (`eval/shadow_check.py`). Returns :func:`class_metrics` output plus ``checkpoint``,
    ``task``, ``stores`` and ``tiles`` (the number of tiles predicted).
    """
    from cloudkit.data.tiles import TileDataset
    from cloudkit.models.checkpoint import load_finetuned, resolve_device
    from cloudkit.models.encoder import check_bands

    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size}: expected at least 1")
    if not stores:
        raise StoreError("no tile store given; pass at least one store made by `cloudkit tile`")
    dev = resolve_device(device)
    # the stores first: a damaged one is said at once, not after the model is built
    readers = [StoreReader.open(Path(store)) for store in stores]
    for reader in readers:
        reader.require_labels()
    payload, model = load_finetuned(checkpoint)
    task = get_task(str(payload.get("task", payload["model"]["task"])))
    any_bands = bool(model.encoder.any_bands)
    checker = None
    if shadows == "geometric":
        require_checkable(task.classes, str(checkpoint))
        checker = TileChecker(task.classes)
    suns = []
    for store, reader in zip(stores, readers, strict=True):
        if any_bands:  # the 13 band slots: any store holding B02 B03 B04
            check_any_band_input(reader.bands, what=f"store {store}")
        else:
            check_bands(model.bands, reader.bands, what=f"store {store}")
        if checker is not None:
            suns.append(StoreSuns.of(reader))
    tiles_of = TileDataset(
        [Path(s) for s in stores], min_valid=1e-9, with_labels=True, any_bands=any_bands
    )
    dataset: Dataset = tiles_of
    if tiles is not None:
        dataset = Subset(tiles_of, [int(i) for i in tiles])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model.to(dev)
    acc = ConfusionAccumulator(task.num_classes, ignore=IGNORE)
    count = 0
    with torch.inference_mode():
        for batch in loader:
            targets = task_targets(batch["labels"], task)
            targets[~batch["valid"][:, 0]] = IGNORE
            if not (targets != IGNORE).any():
                continue
            logits = model(batch["image"].to(dev, non_blocking=True))
            pred = predict_classes(logits, task.binary).cpu().numpy()
            if checker is not None:
                probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
                valid = batch["valid"][:, 0].numpy()
                for j, i in enumerate(batch["index"].tolist()):
                    at, row = tiles_of.tile_of(int(i))  # the store's place in ``stores``
                    pred[j] = checker.check(pred[j], probs[j], valid[j], suns[at], row)
            acc.update(pred, targets.numpy())
            count += len(targets)
    result = class_metrics(acc.matrix, task.classes)
    result.update(
        {
            "checkpoint": str(checkpoint),
            "task": task.name,
            "stores": [str(s) for s in stores],
            "tiles": count,
        }
    )
    if checker is not None:
        result["shadow_check"] = checker.report()
    return result
