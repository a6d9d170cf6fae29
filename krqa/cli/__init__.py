"""The ``krqa`` command line: parses arguments and calls the library; no logic lives here.

Command modules import heavy libraries inside the command functions so ``krqa --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from krqa import __version__
from krqa.cli import ablate, config_cmd, corpus, data, demo, eval_retrieval, evaluate, index, models, predict, search, serve, train
from krqa.errors import KrqaError
from krqa.log import setup_logging
from krqa.sysmem import return_freed_memory

app = typer.Typer(
    name="krqa",
    help="Korean retrieval-augmented QA: index Korean Wikipedia/Namuwiki, retrieve (BM25 + dense), "
    "train two-stage LoRA, predict, evaluate and serve NIKL 한국문화 질의응답 answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"krqa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr; no progress bars.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Exit codes: 0 ok, 1 failure, 2 bad usage or bad input."""
    setup_logging(verbose=verbose, quiet=quiet)


app.add_typer(data.app, name="data")
app.add_typer(config_cmd.app, name="config")
app.add_typer(models.app, name="models")
app.command("build-corpus")(corpus.build_corpus)
app.command("build-index")(index.build_index)
app.command("search")(search.search)
app.command("eval-retrieval")(eval_retrieval.eval_retrieval)
app.command("train")(train.train)
app.command("predict")(predict.predict)
app.command("evaluate")(evaluate.evaluate)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("ablate")(ablate.ablate)


def main() -> None:
    """Console entry point: a KrqaError becomes one line on stderr and its exit code, never a trace."""
    return_freed_memory()
    try:
        app()
    except KrqaError as err:
        logging.getLogger("krqa").debug("error detail", exc_info=True)
        sys.stderr.write(f"krqa: error: {err}\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("krqa: interrupted\n")
        sys.exit(130)
