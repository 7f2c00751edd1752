"""Checksums that tell a scene's finished outputs from damaged ones.

A scene is complete when its JSON summary exists (written last). But a file can be damaged
after that: cut short by a full disk during a copy, a byte flipped, deleted. A re-run that
skipped such a scene would pass the damage off as done. So the summary records the SHA-256
of every output it lists and of its own content (``sha256.summary``: the summary without
that one entry, as canonical JSON), and a re-run checks them before it skips a scene.
In object storage a re-run would have to download every output to hash it; there the summary
also records what each upload left (``objects``: the object's entity tag and size), and a
re-run compares them with a HEAD of each object. Summaries written before these checksums
are checked for what they can be: they parse, and the outputs they list are there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from cloudkit.files.jsonfile import plain

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


def with_objects(summary: dict, objects: dict) -> dict:
    """A sealed ``summary`` with what object storage said of each uploaded output
    (``objects``: kind -> ``e_tag``, ``size``), sealed again."""
    sealed = {**summary, "objects": objects}
    sealed["sha256"] = {**(summary.get("sha256") or {}), "summary": _canonical_digest(sealed)}
    return sealed


def damage(summary_path: Path) -> str | None:
    """What is wrong with the outputs a complete scene's summary vouches for, or None."""
    try:
        text = summary_path.read_bytes()
    except OSError:
        text = None
    summary, problem = _checked_summary(text, summary_path.name)
    if summary is None:
        return problem
    sums = summary.get("sha256")
    for kind, name in _listed_outputs(summary):
        path = summary_path.parent / name
        if not path.is_file():
            return f"{name} is missing"
        if isinstance(sums, dict) and kind in sums and file_digest(path) != sums[kind]:
            return f"{name} does not match its checksum"
    return None


def object_damage(text: bytes | None, name: str, head: Callable[[str], dict | None]) -> str | None:
    """What is wrong with the objects a complete scene's summary in object storage vouches
    for, or None. ``text``: the summary (named ``name``); ``head``: an object's ``e_tag`` and
    ``size`` by key, None when it is gone."""
    summary, problem = _checked_summary(text, name)
    if summary is None:
        return problem
    objects = summary.get("objects")
    uploaded = objects if isinstance(objects, dict) else {}  # none: written before they were
    for kind, key in _listed_outputs(summary):
        found = head(key)
        if found is None:
            return f"{key} is missing"
        recorded = uploaded.get(kind)
        if isinstance(recorded, dict) and any(found[f] != recorded.get(f) for f in found):
            return f"{key} is not the object uploaded with it (its ETag or size changed)"
    return None


def _checked_summary(text: bytes | None, name: str) -> tuple[dict | None, str | None]:
    """The summary ``text`` parsed, if it is a cloudkit summary that matches its own
    checksum; else None and what is wrong."""
    try:
        summary = json.loads(text or b"")
    except (UnicodeDecodeError, ValueError):
        return None, f"{name} is not readable JSON"
    if not isinstance(summary, dict):
        return None, f"{name} is not a cloudkit summary"
    sums = summary.get("sha256")
    if isinstance(sums, dict) and sums.get("summary") != _canonical_digest(summary):
        return None, f"{name} does not match its checksum"
    return summary, None


def _listed_outputs(summary: dict) -> Iterator[tuple[str, str]]:
    """(kind, name) of every output the summary lists; none when written before cloudkit
    listed its outputs."""
    outputs = summary.get("outputs")
    if not isinstance(outputs, dict):
        return
    for kind, name in outputs.items():
        if name:
            yield str(kind), str(name)
