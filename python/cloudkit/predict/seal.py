"""Checksums that tell a scene's finished outputs from damaged ones.

A scene is complete when its JSON summary exists (written last). But a file can be damaged
after that: cut short by a full disk during a copy, a byte flipped, deleted. A re-run that
skipped such a scene would pass the damage off as done. So the summary records the SHA-256
of every output it lists and of its own content (``sha256.summary``: the summary without
that one entry, as canonical JSON), and a re-run checks them before it skips a scene.
Summaries written before these checksums are checked for what they can be: they parse, and
the outputs they list are there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cloudkit.jsonfile import plain

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _canonical_digest(summary: dict) -> str:
    """The digest of ``summary`` without ``sha256.summary``, as it reads back from JSON."""
    body = json.loads(json.dumps(plain(summary), allow_nan=False))
    sums = dict(body.get("sha256") or {})
    sums.pop("summary", None)
    body["sha256"] = sums
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(summary: dict, out_dir: Path) -> dict:
    """``summary`` (whose ``outputs`` name files in ``out_dir``) with their checksums and
    its own."""
    outputs = summary.get("outputs") or {}
    files = {kind: file_digest(Path(out_dir) / name) for kind, name in outputs.items() if name}
    sealed = {**summary, "sha256": files}
    sealed["sha256"] = {**files, "summary": _canonical_digest(sealed)}
    return sealed


def damage(summary_path: Path) -> str | None:
    """What is wrong with the outputs a complete scene's summary vouches for, or None."""
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{summary_path.name} is not readable JSON"
    if not isinstance(summary, dict):
        return f"{summary_path.name} is not a cloudkit summary"
    sums = summary.get("sha256")
    if isinstance(sums, dict) and sums.get("summary") != _canonical_digest(summary):
        return f"{summary_path.name} does not match its checksum"
    outputs = summary.get("outputs")
    if not isinstance(outputs, dict):
        return None  # written before cloudkit listed its outputs: nothing more to check
    for kind, name in outputs.items():
        if not name:
            continue
        path = summary_path.parent / str(name)
        if not path.is_file():
            return f"{name} is missing"
        if isinstance(sums, dict) and kind in sums and file_digest(path) != sums[kind]:
            return f"{name} does not match its checksum"
    return None
