"""`cloudkit models`: the models `--model` takes by name, each with its model card."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudkit.errors import OptionError


def models(
    name: Annotated[
        str | None,
        typer.Argument(help="Print this model's card in full.", show_default=False),
    ] = None,
) -> None:
    """List the models --model takes by name, each as a short model card.

    The models shipped with cloudkit, then the peer models (installed or not, and how to
    install them): bands, classes, resolution, licence, a measured score. With NAME, that
    model's card in full: also its training data, source and every measured score.

    Example: cloudkit models ukis-csmask
    """
    from cloudkit.models.zoo import listings, model_names

    found = listings()
    if name is not None:
        chosen = [item for item in found if item.card.name == name]
        if not chosen:
            raise OptionError(
                f"no model called {name!r}; expected one of {', '.join(model_names())}"
            )
        (item,) = chosen
        typer.echo("\n".join([*item.card.full(), f"  status:        {item.status}"]))
        return
    if not any(item.status.startswith("shipped") for item in found):
        typer.echo("shipped with cloudkit: none yet (pass a checkpoint of `cloudkit finetune`)\n")
    for item in found:
        lines = item.card.short()
        lines[0] += f"  [{item.status}]"
        if item.status == "peer, not installed":
            lines.append(f"  install: {item.card.install}")
        typer.echo("\n".join(lines) + "\n")
