"""Model-based 서술형 metrics: BERTScore F1 and BLEURT, loaded only from local files.

Both are written against plain PyTorch + transformers instead of the ``bert-score`` / ``bleurt-pytorch``
packages: bleurt-pytorch 0.0.1 (the PyPI release) does not import under transformers 5, and owning the few
lines of BERTScore lets the tests pin its maths with tiny random models. The checkpoints are the same
(``bert-base-multilingual-cased`` layer 9, ``lucadiliello/BLEURT-20``), so scores match the official ones.

A model that cannot be found offline raises :class:`MetricUnavailable` with the reason; the aggregator
reports it instead of a number, never as 0.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from krqa.log import progress_disabled
from krqa.model_location import find_model_dir, resolve_device

log = logging.getLogger(__name__)


class MetricUnavailable(Exception):
    """A model metric that cannot run here; ``str()`` is the one-line reason shown to the user."""


def _device(name: str) -> Any:
    import torch  # start-up time: torch loads only when a model metric runs

    return torch.device(resolve_device(name))


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm  # start-up time: `krqa --help` loads this module (through `krqa eval-retrieval`)

    return tqdm(total=total, desc=desc, unit="pair", disable=progress_disabled(), leave=False)


class BertScorer:
    """BERTScore F1 as bert-score computes it by default: greedy cosine matching of layer-``layer`` token
    embeddings, [CLS]/[SEP] excluded, every other token weighted 1 (no idf), optional baseline rescale."""

    def __init__(self, model: str, layer: int, device: str = "auto", baseline_f: float | None = None, batch_size: int = 16) -> None:
        import torch  # start-up time: torch loads only when a model metric runs
        from transformers import AutoModel, AutoTokenizer  # start-up time: as above

        path = find_model_dir(model, "evaluate.bertscore_model", MetricUnavailable)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise MetricUnavailable(f"cannot load {model} from {path}: {str(exc).splitlines()[0]}") from None
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        if n_layers is not None and not 1 <= layer <= n_layers:
            raise MetricUnavailable(f"layer {layer} asked for, but {model} has {n_layers} layers")
        self.name, self.layer, self.baseline_f, self.batch_size = model, layer, baseline_f, batch_size
        self.device = _device(device)
        self.model.to(self.device).eval()
        self._torch = torch

    def _embed(self, texts: Sequence[str]) -> tuple[Any, Any]:
        torch = self._torch
        enc = self.tokenizer(
            [t.strip() for t in texts], padding=True, truncation=True, return_tensors="pt",
            return_special_tokens_mask=True,
        )
        special = enc.pop("special_tokens_mask")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc, output_hidden_states=True).hidden_states[self.layer]
        weights = enc["attention_mask"].float() * (1 - special.to(self.device).float())
        return torch.nn.functional.normalize(hidden.float(), dim=-1), weights

    def score(self, preds: Sequence[str], golds: Sequence[str]) -> list[float]:
        """Per-pair F1; a side with no tokens scores 0, as bert-score does for empty sentences."""
        torch = self._torch
        out: list[float] = []
        with _progress(len(preds), "BERTScore") as bar:
            for start in range(0, len(preds), self.batch_size):
                p_emb, p_w = self._embed(preds[start:start + self.batch_size])
                g_emb, g_w = self._embed(golds[start:start + self.batch_size])
                sim = torch.bmm(p_emb, g_emb.transpose(1, 2))
                sim = sim.masked_fill(p_w.unsqueeze(2) == 0, -2.0).masked_fill(g_w.unsqueeze(1) == 0, -2.0)
                p_sum, g_sum = p_w.sum(1), g_w.sum(1)
                precision = (sim.max(dim=2).values * p_w).sum(1) / p_sum.clamp(min=1)
                recall = (sim.max(dim=1).values * g_w).sum(1) / g_sum.clamp(min=1)
                f1 = 2 * precision * recall / (precision + recall)
                f1 = torch.where((p_sum == 0) | (g_sum == 0) | (precision + recall == 0), torch.zeros_like(f1), f1)
                if self.baseline_f is not None:
                    f1 = (f1 - self.baseline_f) / (1 - self.baseline_f)
                out.extend(f1.cpu().tolist())
                bar.update(len(p_sum))
        return out


def _bleurt_module(config: dict[str, Any]) -> Any:
    """BLEURT = BERT encoder (+ an embedding-to-hidden projection in BLEURT-20) + tanh pooler + linear head.
    Parameter names follow the bleurt-pytorch checkpoints so their state dicts load unchanged."""
    import torch  # start-up time: torch loads only when a model metric runs
    from torch import nn  # start-up time: as above
    from transformers.activations import ACT2FN  # start-up time: as above

    hidden = config["hidden_size"]
    emb_size = config.get("embedding_size") or hidden
    heads = config["num_attention_heads"]
    eps = config.get("layer_norm_eps", 1e-12)
    act = ACT2FN[config.get("hidden_act", "gelu")]

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(config["vocab_size"], emb_size, padding_idx=config.get("pad_token_id", 0))
            self.position_embeddings = nn.Embedding(config["max_position_embeddings"], emb_size)
            self.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), emb_size)
            self.LayerNorm = nn.LayerNorm(emb_size, eps=eps)

        def forward(self, input_ids: Any, token_type_ids: Any) -> Any:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
            x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(positions)
            return self.LayerNorm(x)

    class Dense(nn.Module):
        def __init__(self, d_in: int, d_out: int, norm: bool) -> None:
            super().__init__()
            self.dense = nn.Linear(d_in, d_out)
            if norm:
                self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = Dense(hidden, hidden, norm=True)

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Dense(hidden, config["intermediate_size"], norm=False)
            self.output = Dense(config["intermediate_size"], hidden, norm=True)

        def forward(self, x: Any, mask: Any) -> Any:
            b, n, _ = x.shape
            sa = self.attention.self

            def split(t: Any) -> Any:
                return t.view(b, n, heads, hidden // heads).transpose(1, 2)

            ctx = nn.functional.scaled_dot_product_attention(split(sa.query(x)), split(sa.key(x)), split(sa.value(x)), attn_mask=mask)
            ctx = ctx.transpose(1, 2).reshape(b, n, hidden)
            out = self.attention.output
            x = out.LayerNorm(out.dense(ctx) + x)
            ff = self.output
            return ff.LayerNorm(ff.dense(act(self.intermediate.dense(x))) + x)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(config["num_hidden_layers"]))
            if config.get("embedding_size") is not None:
                self.embedding_projection = nn.Linear(emb_size, hidden)

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()
            self.pooler = Dense(hidden, hidden, norm=False)

    class Bleurt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bleurt = Backbone()
            self.classifier = nn.Linear(hidden, config.get("num_labels", 1))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            x = self.bleurt.embeddings(input_ids, token_type_ids)
            if hasattr(self.bleurt.encoder, "embedding_projection"):
                x = self.bleurt.encoder.embedding_projection(x)
            mask = attention_mask[:, None, None, :].bool()
            for layer in self.bleurt.encoder.layer:
                x = layer(x, mask)
            pooled = torch.tanh(self.bleurt.pooler.dense(x[:, 0]))
            return self.classifier(pooled)[:, 0]

    return Bleurt()


def _load_state_dict(path: Path) -> dict[str, Any]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file  # start-up time: safetensors.torch imports torch

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        import torch  # start-up time: torch loads only when a model metric runs

        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise MetricUnavailable(f"{path}: no model.safetensors or pytorch_model.bin")


class _SentencePiecePairs:
    """BERT-style pair encoding over a SentencePiece model: ``[CLS] ref [SEP] cand [SEP]``, segment ids 0/1,
    longest-first truncation. transformers 5's DebertaV2Tokenizer (what bleurt-pytorch subclasses) no longer
    reads a bare ``spm.model`` faithfully, so the few rules are applied here directly on SentencePiece."""

    def __init__(self, model_file: Path) -> None:
        import sentencepiece  # optional dependency: the metrics extra

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        ids = {name: self.sp.piece_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]")}
        if any(self.sp.id_to_piece(i) != name for name, i in ids.items()):
            raise MetricUnavailable(f"{model_file}: SentencePiece model lacks the [CLS]/[SEP]/[PAD] pieces BLEURT needs")
        self.cls, self.sep, self.pad = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]

    def __call__(self, refs: list[str], cands: list[str], max_length: int) -> dict[str, Any]:
        import torch  # start-up time: torch loads only when a model metric runs

        rows = []
        for a, b in zip(self.sp.encode(refs), self.sp.encode(cands)):
            a, b = list(a), list(b)
            while len(a) + len(b) > max_length - 3:
                (a if len(a) >= len(b) else b).pop()
            rows.append(([self.cls, *a, self.sep, *b, self.sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)))
        width = max(len(ids) for ids, _ in rows)
        return {
            "input_ids": torch.tensor([ids + [self.pad] * (width - len(ids)) for ids, _ in rows]),
            "token_type_ids": torch.tensor([seg + [0] * (width - len(seg)) for _, seg in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows]),
        }


class _WordPiecePairs:
    """The original BLEURT checkpoints (bleurt-base/large/tiny) use a BERT WordPiece vocabulary."""

    def __init__(self, vocab_file: Path, lower: bool) -> None:
        from transformers import BertTokenizer  # start-up time: transformers loads only when a model metric runs

        self.tokenizer = BertTokenizer(vocab_file=str(vocab_file), do_lower_case=lower)

    def __call__(self, refs: list[str], cands: list[str], max_length: int) -> dict[str, Any]:
        return dict(self.tokenizer(refs, cands, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def _bleurt_tokenizer(path: Path) -> _SentencePiecePairs | _WordPiecePairs:
    """BLEURT-20 ships a SentencePiece ``spm.model``; older BLEURTs a WordPiece ``vocab.txt``."""
    if (path / "spm.model").is_file():
        return _SentencePiecePairs(path / "spm.model")
    if (path / "vocab.txt").is_file():
        tok_cfg_file = path / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_file.read_text(encoding="utf-8")) if tok_cfg_file.is_file() else {}
        return _WordPiecePairs(path / "vocab.txt", bool(tok_cfg.get("do_lower_case", True)))
    raise MetricUnavailable(f"{path}: no spm.model or vocab.txt for the BLEURT tokenizer")


class BleurtScorer:
    """BLEURT regression score of (reference, candidate) pairs, the reference first as in BLEURT itself."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16, max_length: int = 512) -> None:
        import torch  # start-up time: torch loads only when a model metric runs

        path = find_model_dir(model, "evaluate.bleurt_model", MetricUnavailable)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise MetricUnavailable(f"{path}: config.json missing")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if config.get("model_type") != "bleurt":
            raise MetricUnavailable(f"{path}: model_type is {config.get('model_type')!r}, not a BLEURT checkpoint")
        self.tokenizer = _bleurt_tokenizer(path)
        self.model = _bleurt_module(config)
        state = {k: v for k, v in _load_state_dict(path).items() if not k.endswith("position_ids")}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise MetricUnavailable(f"{path}: weights do not fit BLEURT (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.name, self.batch_size = model, batch_size
        self.max_length = min(max_length, config["max_position_embeddings"])
        self.device = _device(device)
        self.model.to(self.device).eval()
        self._torch = torch

    def score(self, preds: Sequence[str], golds: Sequence[str]) -> list[float]:
        out: list[float] = []
        with _progress(len(preds), "BLEURT") as bar:
            for start in range(0, len(preds), self.batch_size):
                refs = list(golds[start:start + self.batch_size])
                cands = list(preds[start:start + self.batch_size])
                enc = self.tokenizer(refs, cands, self.max_length)
                with self._torch.inference_mode():
                    scores = self.model(
                        enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device), enc["token_type_ids"].to(self.device)
                    )
                out.extend(float(s) for s in scores.float().cpu())
                bar.update(len(refs))
        if any(math.isnan(s) for s in out):
            raise MetricUnavailable(f"{self.name}: produced NaN scores")
        return out
