"""What a written figure must be: a whole PNG file."""

from __future__ import annotations

from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    """``path`` starts with the PNG signature and ends with the IEND chunk (not cut short)."""
    data = Path(path).read_bytes()
    return data.startswith(PNG_SIGNATURE) and data[-12:-4] == b"\x00\x00\x00\x00IEND"
