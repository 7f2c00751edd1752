"""The `cloudkit` command. Each subcommand lives in its own module; heavy imports stay inside them."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading

import typer

from cloudkit import __version__
from cloudkit.cli import check as _check
from cloudkit.cli import demo as _demo
from cloudkit.cli import evaluate as _evaluate
from cloudkit.cli import experiment as _experiment
from cloudkit.cli import export as _export
from cloudkit.cli import finetune as _finetune
from cloudkit.cli import models as _models
from cloudkit.cli import predict as _predict
from cloudkit.cli import pretrain as _pretrain
from cloudkit.cli import tile as _tile
from cloudkit.errors import CloudkitError

app = typer.Typer(
    name="cloudkit",
    help="Cloud detection in Sentinel-2 imagery with self-supervised learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def prose(doc: str | None) -> str:
    """A docstring as ``--help`` should show it: each paragraph one line, which the terminal
    wraps to its width (typer keeps a docstring's line breaks, which then fall mid-sentence)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


for _name, _command in (
    ("demo", _demo.demo),
    ("tile", _tile.tile),
    ("pretrain", _pretrain.pretrain),
    ("evaluate", _evaluate.evaluate),
    ("finetune", _finetune.finetune),
    ("experiment", _experiment.experiment),
    ("predict", _predict.predict),
    ("models", _models.models),
    ("export", _export.export),
    ("check", _check.check),
):
    app.command(_name, help=prose(_command.__doc__))(_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cloudkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Cloud detection in Sentinel-2 imagery with self-supervised learning."""
    # a callback keeps `tile` a subcommand even while it is the only one


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns cloudkit errors into one line on stderr, exit 1.

    Set CLOUDKIT_DEBUG=1 to see the traceback as well.
    """
    try:
        with _sigterm_as_interrupt():
            # obj: what a command that runs other commands calls (the demo)
            code = app(args=argv, prog_name="cloudkit", standalone_mode=False, obj={"main": main})
        # without standalone mode typer turns Ctrl-C into Exit(130) and click *returns* an
        # Exit's code instead of raising it; commands themselves return None
        if isinstance(code, int) and code != 0:
            if code == 130:
                print("cloudkit: interrupted", file=sys.stderr)
            return code
    except CloudkitError as err:
        if os.environ.get("CLOUDKIT_DEBUG") == "1":
            raise
        print(f"cloudkit: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cloudkit: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:  # click's form of a KeyboardInterrupt (Ctrl-C, SIGTERM)
        print("cloudkit: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # click usage errors and the like
        import click

        # recent typer raises usage errors from its own vendored copy of click
        if isinstance(err, click.ClickException | typer.TyperException) and hasattr(err, "show"):
            err.show()
            return err.exit_code
        raise
    return 0


def _one_line(err: Exception) -> str:
    """A cloudkit error's message. Raised in a DataLoader worker, torch re-raises it in the
    main process with the worker's traceback in the message: keep the error's own line."""
    message = str(err)
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if last.startswith("cloudkit.") and ": " in last else last


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM (``kill``, a batch scheduler's time limit) like Ctrl-C while a command
    runs, so its clean-up runs: a half-written scene, mask or checkpoint is removed, not left
    looking complete. The previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
