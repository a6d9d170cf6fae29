"""``krqa data``: inspect competition files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.qa.data import load_items, save_items, stats
from krqa.qa.reading import make_items, read_squad, split_items

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


@app.command("reading-set")
def reading_set_cmd(
    squad: Annotated[Path, typer.Argument(help="SQuAD-format file (e.g. KorQuAD_v1.0_dev.json).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for train.json and heldout.json.")] = Path("data/reading"),
    heldout: Annotated[float, typer.Option("--heldout", help="Share of ARTICLES held out (the split is by article).", min=0.0, max=1.0)] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed for distractors, option order and the split.")] = 0,
    distractors: Annotated[str, typer.Option("--distractors", help="other-paragraphs: distractors never occur in the question's own paragraph (the set measures retrieval); article: any answer of the article (measures reading).")] = "other-paragraphs",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Turn a reading-comprehension file into 선다형 + 단답형 items in the NIKL format, split by article.

    Each question gives a 단답형 item (gold: its answer span) and a 선다형 item with three distractors of the same
    shape taken from other answers about the same article (by default none that occurs in the question's own
    paragraph, so finding that paragraph identifies the answer). Index the same file (`krqa build-index --corpus
    FILE`) to measure what retrieval adds on questions whose answers the corpus holds.
    """
    get_config(config, overrides)
    questions = read_squad(squad)
    train, held = split_items(make_items(questions, seed, distractors_from=distractors), heldout, seed)
    out.mkdir(parents=True, exist_ok=True)
    save_items(train, out / "train.json")
    save_items(held, out / "heldout.json")
    result = {
        "source": str(squad), "questions": len(questions), "articles": len({q.article for q in questions}),
        "train": {"file": str(out / "train.json"), **Counter(i.question_type for i in train)},
        "heldout": {"file": str(out / "heldout.json"), **Counter(i.question_type for i in held)},
    }
    if json_out:
        print_json(result)
        return
    typer.echo(f"{result['questions']} questions from {result['articles']} articles -> "
               f"train {len(train)} items ({out / 'train.json'}), held-out {len(held)} items ({out / 'heldout.json'})")
