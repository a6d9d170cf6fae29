"""``krqa data``: inspect competition files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json

app = typer.Typer(help="Inspect NIKL-format competition files.", no_args_is_help=True)


@app.command("stats")
def stats_cmd(
    files: Annotated[list[Path], typer.Argument(help="NIKL-format JSON files (train/dev/test).", show_default=False)],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate files and count items by split, question type, category and domain.

    Any malformed item (bad JSON, missing field, unknown type, duplicate id, 선다형 without options)
    stops with a one-line reason naming the file, item id and field, and exit code 2.
    """
    from krqa.qa.data import load_items, stats

    get_config(config, overrides)
    results = [stats(load_items(f), f) for f in files]
    if json_out:
        print_json(results if len(results) > 1 else results[0])
        return
    console = Console()
    for r in results:
        table = Table(title=f"{r['file']} ({r['split']}, {r['items']} items, {r['with_answers']} with answers)")
        table.add_column("group")
        table.add_column("value")
        table.add_column("count", justify="right")
        for group in ("by_type", "by_category", "by_domain", "mc_option_counts"):
            for key, count in r[group].items():
                table.add_row(group.replace("by_", "").replace("mc_option_counts", "선다형 options"), key, str(count))
        table.add_row("선다형", "options parsed", str(r["mc_options_parsed"]))
        table.add_row("단답형", "with # alternatives", str(r["short_with_alternatives"]))
        console.print(table)
