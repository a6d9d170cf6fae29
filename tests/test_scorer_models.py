"""BERTScore and BLEURT as the official scorer computes them, on tiny random models built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from krqa.qa.config import EvaluateConfig
from krqa.qa.data import QAItem
from krqa.qa.scorer import BertScorer, BleurtScorer, MetricUnavailable, score

MC_Q = "보기 중 고르시오 \\n 1\\t가 2\\t나 3\\t다"


def _item(i: str, qtype: str, answer: str) -> QAItem:
    question = MC_Q if qtype == "선다형" else "질문"
    return QAItem(id=i, category="문화 지식", domain="역사", question_type=qtype, topic_keyword="k", question=question, answer=answer)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"가나다라마바사아자차카타파하세종대왕훈민정음은을는이", "ab", "cd"]


def _tiny_bert(tmp: Path, name: str) -> tuple[Path, object, object]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    (tmp / name).mkdir()
    (tmp / name / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(tmp / name / "vocab.txt"), do_lower_case=False, tokenize_chinese_chars=False)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    model = BertForSequenceClassification(config).eval()
    return tmp / name, tokenizer, model


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, tokenizer, model = _tiny_bert(tmp_path_factory.mktemp("bs"), "bert")
    model.bert.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_bertscore_identical_is_one_and_different_is_less(tiny_bert_dir: Path) -> None:
    scorer = BertScorer(str(tiny_bert_dir), layer=2, device="cpu", batch_size=2)
    preds = ["세종 대왕", "가 나 다 라", "ab cd", ""]
    golds = ["세종 대왕", "하 파 타 카 차", "ab", "가"]
    f1 = scorer.score(preds, golds)
    assert f1[0] == pytest.approx(1.0, abs=1e-5)
    assert f1[1] < 0.999
    assert 0 < f1[2] < 1.0
    assert f1[3] == 0.0


def test_bertscore_matches_hand_computed_greedy_matching(tiny_bert_dir: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()

    def emb(text: str) -> torch.Tensor:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc, output_hidden_states=True).hidden_states[1][0, 1:-1]
        return torch.nn.functional.normalize(h, dim=-1)

    p, g = emb("가 나 ab"), emb("나 다 라 cd")
    sim = p @ g.T
    prec, rec = sim.max(1).values.mean(), sim.max(0).values.mean()
    expected = float(2 * prec * rec / (prec + rec))
    got = BertScorer(str(tiny_bert_dir), layer=1, device="cpu").score(["가 나 ab"], ["나 다 라 cd"])[0]
    assert got == pytest.approx(expected, abs=1e-5)
    rescaled = BertScorer(str(tiny_bert_dir), layer=1, device="cpu", baseline_f=0.5).score(["가 나 ab"], ["나 다 라 cd"])[0]
    assert rescaled == pytest.approx((expected - 0.5) / 0.5, abs=1e-5)


def test_bertscore_layer_beyond_model_is_unavailable(tiny_bert_dir: Path) -> None:
    with pytest.raises(MetricUnavailable, match="layer 9"):
        BertScorer(str(tiny_bert_dir), layer=9, device="cpu")


def _save_as_bleurt(path: Path, tokenizer: object, model: object, embedding_size: int | None = None) -> None:
    from safetensors.torch import save_file

    state = {k.replace("bert.", "bleurt.", 1): v.contiguous() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    save_file(state, str(path / "model.safetensors"))
    cfg = model.config.to_dict()  # type: ignore[attr-defined]
    cfg.update(model_type="bleurt", embedding_size=embedding_size)
    (path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")


def test_bleurt_equals_bert_regression_head_on_same_weights(tmp_path: Path) -> None:
    import torch

    path, tokenizer, model = _tiny_bert(tmp_path, "bleurt")
    _save_as_bleurt(path, tokenizer, model)
    refs, cands = ["세종 대왕 훈민정음", "가 나"], ["세종 대왕", "다 라 마 바"]
    enc = tokenizer(refs, cands, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits[:, 0].tolist()  # type: ignore[operator]
    got = BleurtScorer(str(path), device="cpu", batch_size=2).score(cands, refs)
    assert got == pytest.approx(expected, abs=1e-4)


def test_bleurt_with_embedding_projection_loads_and_runs(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from krqa.qa.scorer.model_scores import _bleurt_module

    path, tokenizer, model = _tiny_bert(tmp_path, "bleurt20")
    _save_as_bleurt(path, tokenizer, model, embedding_size=16)
    cfg = json.loads((path / "config.json").read_text())
    torch.manual_seed(1)
    save_file({k: v.contiguous() for k, v in _bleurt_module(cfg).state_dict().items()}, str(path / "model.safetensors"))
    scores = BleurtScorer(str(path), device="cpu").score(["가 나", "세종"], ["가 나", "대왕"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_bleurt_rejects_non_bleurt_checkpoint(tiny_bert_dir: Path) -> None:
    with pytest.raises(MetricUnavailable, match="not a BLEURT"):
        BleurtScorer(str(tiny_bert_dir), device="cpu")


def test_missing_models_are_unavailable_not_zero(tmp_path: Path) -> None:
    gold = [_item("1", "서술형", "세종대왕은 훈민정음을 만들었다.")]
    cfg = EvaluateConfig(bertscore_model=str(tmp_path / "nope"), bleurt_model="nobody/not-cached-bleurt")
    report = score([gold[0].to_json("세종대왕")], gold, cfg)
    assert "not found" in report["unavailable"]["bertscore"]
    assert "Hugging Face cache" in report["unavailable"]["bleurt"]
    assert report["by_type"]["서술형"]["bertscore"] is None and report["by_type"]["서술형"]["bleurt"] is None
    assert report["final"] is None and report["by_type"]["서술형"]["desc_mean"] is None
    assert report["final_available"] == pytest.approx(report["by_type"]["서술형"]["rouge1"])


def test_score_with_tiny_models_gives_official_final(tiny_bert_dir: Path, tmp_path: Path) -> None:
    path, tokenizer, model = _tiny_bert(tmp_path, "bleurt")
    _save_as_bleurt(path, tokenizer, model)
    gold = [_item("1", "선다형", "1"), _item("2", "단답형", "호조"), _item("3", "서술형", "세종 대왕 훈민정음")]
    preds = [g.to_json(g.answer) for g in gold]
    cfg = EvaluateConfig(bertscore_model=str(tiny_bert_dir), bertscore_layer=2, bleurt_model=str(path), device="cpu")
    report = score(preds, gold, cfg)
    desc = report["by_type"]["서술형"]
    assert report["unavailable"] == {}
    assert desc["bertscore"] == pytest.approx(1.0, abs=1e-5)
    assert desc["desc_mean"] == pytest.approx((desc["rouge1"] + desc["bertscore"] + desc["bleurt"]) / 3)
    assert report["final"] == pytest.approx((1.0 + 1.0 + desc["desc_mean"]) / 3)
    assert report["comparable_with_leaderboard"]


def test_bleurt_sentencepiece_pair_encoding(tmp_path: Path) -> None:
    import sentencepiece

    from krqa.qa.scorer.model_scores import _bleurt_tokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(["세종대왕은 훈민정음을 창제하였다", "한국의 전통 문화"] * 20), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "spm"), vocab_size=40, hard_vocab_limit=False, user_defined_symbols=["[CLS]", "[SEP]"],
        pad_id=0, pad_piece="[PAD]", unk_id=1, unk_piece="[UNK]", bos_id=-1, eos_id=-1, minloglevel=2,
    )
    encode = _bleurt_tokenizer(tmp_path)
    enc = encode(["세종대왕", "한국의 전통 문화"], ["전통", "세종"], 64)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    first = [sp.id_to_piece(int(i)) for i in enc["input_ids"][0] if int(i) != 0]
    assert first == ["[CLS]", *sp.encode("세종대왕", out_type=str), "[SEP]", *sp.encode("전통", out_type=str), "[SEP]"]
    assert "[UNK]" not in first
    short = encode(["세종대왕은 훈민정음을"], ["전통"], 8)["token_type_ids"][0].tolist()
    assert len(short) == 8 and short.count(1) == len(sp.encode("전통")) + 1  # longest-first: the long side is cut
    assert enc["token_type_ids"][0].tolist()[: len(first)] == [0] * (len(sp.encode("세종대왕")) + 2) + [1] * (len(sp.encode("전통")) + 1)
    assert int(enc["attention_mask"][0].sum()) == len(first)
