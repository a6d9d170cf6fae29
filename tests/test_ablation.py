"""The ablation harness: bootstrap statistics on cases with known answers, and a quick run on the tiny config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from krqa.ablation import Variant, ablate, grid, read_variants, sample_items
from krqa.errors import InputError
from krqa.qa.data import load_items
from krqa.qa.scorer.bootstrap import confidence, paired


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    """Bernoulli(0.7) over 400 items: the 95% interval holds the mean and is about 2·1.96·sqrt(p(1-p)/n) wide."""
    rng = np.random.default_rng(3)
    scores = (rng.random(400) < 0.7).astype(float).tolist()
    ci = confidence({"선다형": scores}, n_boot=4000)
    mean = float(np.mean(scores))
    expected = 2 * 1.96 * math.sqrt(mean * (1 - mean) / 400)
    assert ci["선다형"].low < mean < ci["선다형"].high
    assert ci["선다형"].high - ci["선다형"].low == pytest.approx(expected, rel=0.15)
    assert ci["final"].value == pytest.approx(mean)


def test_final_is_the_mean_of_type_means() -> None:
    ci = confidence({"선다형": [1.0, 1.0, 0.0, 1.0], "단답형": [0.0, 1.0], "서술형": [0.2, 0.4, 0.6]}, n_boot=500)
    assert ci["final"].value == pytest.approx((0.75 + 0.5 + 0.4) / 3)


def test_paired_bootstrap_detects_a_real_gain_and_not_noise() -> None:
    rng = np.random.default_rng(5)
    base = (rng.random(300) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:45]] = 1.0  # 45 wrong answers fixed, nothing broken: +0.15
    gain = paired({"선다형": better.tolist()}, {"선다형": base.tolist()}, n_boot=3000)
    assert gain["delta"] == pytest.approx(0.15) and gain["p_value"] < 0.001 and gain["low"] > 0
    same = paired({"선다형": base.tolist()}, {"선다형": base.tolist()}, n_boot=500)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    # Two answers changed, one each way: no evidence either way.
    swapped = base.copy()
    swapped[np.flatnonzero(base == 0)[0]] = 1.0
    swapped[np.flatnonzero(base == 1)[0]] = 0.0
    assert paired({"선다형": swapped.tolist()}, {"선다형": base.tolist()}, n_boot=500)["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired({"선다형": [1.0]}, {"선다형": [1.0, 0.0]})


def test_grid_names_and_variant_file(tmp_path: Path) -> None:
    rows = grid({"base": None, "stage2": "runs/x"}, [False, True], ["generate", "score"], [3], permutations=4)
    assert len(rows) == 2 * 2 * 3
    assert rows[0].name == "base · no-RAG · generate" and rows[-1].name == "stage2 · RAG k=3 · score×4"
    assert rows[-1].sets == {"generation.mc_mode": "score", "generation.mc_permutations": 4}
    f = tmp_path / "v.yaml"
    f.write_text("- {name: a, rag: false}\n- {name: b, top_k: 2, set: {generation.mc_mode: generate}}\n", encoding="utf-8")
    assert [v.name for v in read_variants(f)] == ["a", "b"]
    f.write_text("- {name: a, colour: red}\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown key"):
        read_variants(f)


def test_sample_items_per_type(repo: Path) -> None:
    items = load_items(repo / "corpus" / "sample_qa.json")
    picked = sample_items(items, 2, seed=1)
    assert sorted(i.question_type for i in picked) == sorted(["선다형", "단답형", "서술형"] * 2)
    assert sample_items(items, 2, seed=1) == picked and sample_items(items, None, 0) == items


@pytest.mark.slow
def test_quick_ablation_on_the_tiny_config(repo: Path, tiny_cfg, tiny_bm25_index: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg.model_copy(update={"index": tiny_cfg.index.model_copy(update={"dir": str(tiny_bm25_index)}),
                                      "retrieval": tiny_cfg.retrieval.model_copy(update={"mode": "bm25"})})
    rows = [Variant("no-rag generate", rag=False, sets={"generation.mc_mode": "generate"}),
            Variant("no-rag score", rag=False, sets={"generation.mc_mode": "score"}),
            Variant("rag score", rag=True, top_k=2, sets={"generation.mc_mode": "score"})]
    out = tmp_path / "abl"
    result = ablate(cfg, repo / "corpus" / "sample_qa.json", rows, out, per_type=3, n_boot=300)
    assert [r["name"] for r in result["rows"]] == [v.name for v in rows]
    assert result["rows"][0]["vs_baseline"] is None and 0 <= result["rows"][2]["vs_baseline"]["p_value"] <= 1
    for r in result["rows"]:
        assert set(r["scores"]) == {"선다형", "단답형", "서술형", "final"}
        s = r["scores"]["final"]
        assert s["low"] <= s["value"] <= s["high"]
    # 단답형/서술형 answers do not depend on the 선다형 mode: the two no-RAG rows share one prediction part.
    assert result["rows"][0]["parts"]["rest"]["dir"] == result["rows"][1]["parts"]["rest"]["dir"]
    assert result["rows"][1]["parts"]["mc"]["by_method"] == {"score": 3}
    assert (out / "ablation.png").stat().st_size > 1000 and json.loads((out / "ablation.json").read_text(encoding="utf-8"))["items"] == 9
    table = (out / "ablation.md").read_text(encoding="utf-8").splitlines()
    assert [line.split(" | ")[0] for line in table[2:] if line.startswith("| ")] == [f"| {v.name}" for v in rows]
    assert table[2].startswith(f"| {rows[0].name} |") and "| baseline |" in table[2]
    # 단답형 by span extraction (the default) adds the candidate-recall column and its note
    assert "candidate recall ³" in table[0] and any(line.startswith("³ ") for line in table)
    again = ablate(cfg, repo / "corpus" / "sample_qa.json", rows, out, per_type=3, n_boot=300)
    assert all(p["answered_now"] == 0 for r in again["rows"] for p in r["parts"].values())
