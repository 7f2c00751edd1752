"""`cloudkit` run in-process, and the one-line error every failed command ends with."""

from __future__ import annotations

from cloudkit.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``cloudkit ARGS...`` (arguments may be paths)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    """The single line a failed command leaves on stderr: ``cloudkit: error: ...``, no
    traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("cloudkit: error: ") and "Traceback" not in err
    return lines[0]


def fails_with_one_line(capsys, *args) -> str:
    """Run ``cloudkit ARGS...``, which must exit 1 with one line on stderr; that line."""
    code, _, err = run(capsys, *args)
    assert code == 1, err
    return one_line_error(err)
