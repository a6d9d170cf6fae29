"""``krqa config``: show the resolved config."""

from __future__ import annotations

import typer

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.config import dump_config

app = typer.Typer(help="Show and check YAML configs.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOpt = None, overrides: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Print the config after defaults and --set overrides are applied (YAML, or JSON with --json)."""
    cfg = get_config(config, overrides)
    if json_out:
        print_json(cfg.model_dump(mode="json"))
    else:
        typer.echo(dump_config(cfg), nl=False)
