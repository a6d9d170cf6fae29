"""Training speed on CPU with the tiny model, and the 8B memory/time estimate the README quotes.

Part 1 (measured): LoRA training steps of the tiny-test model on the bundled sample questions, with and
without gradient checkpointing: median step time and tokens/s over several runs, and their ratio.

Part 2 (computed): memory and time per epoch for configs/kanana-8b.yaml on one 80 GB GPU in bf16, from the
architecture (Llama-like 8B: 32 layers, hidden 4096, MLP 14336, GQA 8 KV heads x 128, vocab 128256), the LoRA
rank and the real token counts of the NIKL train set (+ CLIcK for stage 1) built with the real prompt builder.
Tokens are counted with --tokenizer-model (default: the tiny-test tokenizer is NOT representative, so a
chars-per-token ratio is used instead; pass a real Korean-capable tokenizer's model spec when one is available).

    .venv/bin/python bench/bench_train.py [--runs 5] [--steps 6] [--chars-per-token 1.6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _examples(cfg, builder, tokenizer, batch_size: int):
    from krqa.training.data import PadCollator, encode_examples
    from krqa.training.external import load_nikl
    from krqa.training.sft import stage_examples

    sources = load_nikl(cfg.resolve_path(cfg.train.train_file))
    enc, _ = encode_examples(builder.build_training_pair, tokenizer, stage_examples(sources, "first"), cfg.train.max_seq_len)
    collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    return [collate(enc[i : i + batch_size]) for i in range(0, len(enc) - batch_size + 1, batch_size)]


def measure_cpu(runs: int, steps: int) -> list[dict]:
    import torch

    from krqa.config import load_config
    from krqa.generation.lm import load_tokenizer
    from krqa.qa.prompts import PromptBuilder
    from krqa.training import lora

    cfg = load_config(REPO / "configs" / "tiny-test.yaml")
    tokenizer = load_tokenizer(cfg.model)
    batches = _examples(cfg, PromptBuilder(cfg.prompt, tokenizer), tokenizer, cfg.train.batch_size)
    rows = []
    for checkpointing in (False, True):
        step_times, tok_rates = [], []
        for run in range(runs):
            torch.manual_seed(run)
            model = lora.new_adapter(lora.load_base_for_training(cfg.model, cfg.train, "fp32"), cfg.train.lora)
            if checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            times, tokens = [], 0
            for i in range(steps + 1):  # the first step warms up allocator and kernels and is not timed
                batch = batches[i % len(batches)]
                t0 = time.perf_counter()
                loss = model(**batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:
                    times.append(time.perf_counter() - t0)
                    tokens += int(batch["attention_mask"].sum())
            step_times.append(statistics.median(times))
            tok_rates.append(tokens / sum(times))
        rows.append({"gradient_checkpointing": checkpointing, "step_ms": statistics.median(step_times) * 1000, "tokens_per_s": statistics.median(tok_rates), "runs": runs, "steps": steps})
    return rows


# ---- part 2: the 8B estimate -------------------------------------------------------------------------------

ARCH = {"layers": 32, "hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8, "head_dim": 128, "vocab": 128256}
GPU_PEAK = {"H100 SXM bf16 dense": 989e12, "A100 80GB bf16 dense": 312e12}


def model_params(a: dict) -> int:
    h, i, kv = a["hidden"], a["intermediate"], a["kv_heads"] * a["head_dim"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h  # q,o + k,v + gate/up/down + 2 RMSNorm
    return a["layers"] * per_layer + 2 * a["vocab"] * h + h  # untied embeddings and lm_head + final norm


def lora_params(a: dict, r: int) -> int:
    """r * (in + out) per adapted linear: q, k, v, o, gate, up, down in every layer (lm_head excluded)."""
    h, i, kv = a["hidden"], a["intermediate"], a["kv_heads"] * a["head_dim"]
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    return a["layers"] * sum(r * (n_in + n_out) for n_in, n_out in shapes)


def activation_bytes(a: dict, batch: int, seq: int, lora_dropout: bool) -> dict[str, float]:
    """bf16 activations with gradient checkpointing: saved layer inputs + one layer recomputed + the logits.

    One recomputed layer keeps (in units of batch*seq*hidden bf16 values): norm in/out x2 (4), q/k/v and their
    RoPE copies (1 + 0.25 + 0.25 + 1.25), attention output (1), MLP gate/up/act/product (4 x 3.5), and with LoRA
    dropout a dropped copy of the input for each adapted module (6 + 3.5); doubled for their gradients during
    that layer's backward. Logits: bf16 + fp32 upcast in the loss + fp32 gradient = 10 bytes per vocab entry.
    """
    sbh = batch * seq * a["hidden"]
    units = 4 + 2.75 + 1 + 4 * a["intermediate"] / a["hidden"] + ((6 + a["intermediate"] / a["hidden"]) if lora_dropout else 0)
    return {
        "checkpoints": a["layers"] * sbh * 2,
        "one_layer_recompute": 2 * units * sbh * 2,
        "logits": batch * seq * a["vocab"] * 10,
    }


def token_counts(chars_per_token: float, tokenizer=None) -> dict[str, dict]:
    """Stage-1 (NIKL train + CLIcK, no contexts) and stage-2 (NIKL train + ~3.5 passages of 500 chars) lengths."""
    import numpy as np

    from krqa.config import load_config
    from krqa.qa.prompts import PromptBuilder
    from krqa.training.converters import convert_click, convert_squad
    from krqa.training.external import Passage, load_nikl
    from krqa.training.sft import stage_examples

    shared = REPO.parent / "shared" / "data"
    cfg = load_config(REPO / "configs" / "kanana-8b.yaml")
    nikl = load_nikl(shared / "nikl_culture_qa" / "korean_culture_qa_V1.0_train+.json")
    click = convert_click(shared / "click" / "Dataset")
    wiki = [s.contexts[0].text[:500] for s in convert_squad(shared / "korquad" / "KorQuAD_v1.0_dev_part_a.json")[::7]]
    rng = np.random.default_rng(0)
    raft = cfg.train.raft

    class _CharTok:  # only the chat-template probe of the prompt builder touches it
        chat_template = None
        eos_token = ""

    builder = PromptBuilder(cfg.prompt, tokenizer or _CharTok())

    def n_tokens(text: str) -> int:
        return len(tokenizer(text)["input_ids"]) if tokenizer is not None else math.ceil(len(text) / chars_per_token)

    out = {}
    for stage, sources, with_ctx in (("stage1", nikl + click, False), ("stage2", nikl, True)):
        lengths = []
        for ex in stage_examples(sources, "first"):
            ctx = [Passage("문서", wiki[int(j)]) for j in rng.choice(len(wiki), int(rng.integers(raft.min_contexts, raft.max_contexts + 1)))] if with_ctx else ex.contexts
            prompt, answer = builder.build_training_pair(ex.item, ctx, ex.target)
            lengths.append(min(n_tokens(prompt) + n_tokens(answer), cfg.train.max_seq_len))
        lengths = np.array(lengths)
        b = cfg.train.batch_size
        padded = sum(int(chunk.max()) * len(chunk) for chunk in np.array_split(rng.permutation(lengths), math.ceil(len(lengths) / b)))
        out[stage] = {"examples": len(lengths), "tokens": int(lengths.sum()), "padded_tokens": padded, "mean_len": float(lengths.mean()), "p95_len": float(np.percentile(lengths, 95)), "max_len": int(lengths.max())}
    return out


def estimate(chars_per_token: float, mfu: float, tokenizer=None) -> None:
    from krqa.config import load_config

    cfg = load_config(REPO / "configs" / "kanana-8b.yaml")
    a, r = ARCH, cfg.train.lora.r
    n, n_lora = model_params(a), lora_params(a, r)
    gb = 1e9
    print(f"\n## configs/kanana-8b.yaml estimate (bf16, LoRA r={r} on all linear layers, batch {cfg.train.batch_size}, gradient checkpointing)")
    print(f"base params {n / 1e9:.2f} B -> bf16 weights {n * 2 / gb:.1f} GB; LoRA params {n_lora / 1e6:.1f} M -> fp32 weights+grads+Adam m,v {n_lora * 16 / gb:.2f} GB")
    counts = token_counts(chars_per_token, tokenizer)
    how = "tokenizer" if tokenizer is not None else f"{chars_per_token} chars/token"
    print(f"\ntoken counts ({how}; padded = right padding in random batches of {cfg.train.batch_size}):")
    print("| stage | examples | tokens | padded tokens | mean len | p95 len |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for stage, c in counts.items():
        print(f"| {stage} | {c['examples']} | {c['tokens']:,} | {c['padded_tokens']:,} | {c['mean_len']:.0f} | {c['p95_len']:.0f} |")
    print("\n| stage | seq (p95) | weights | LoRA+optimizer | activations (ckpt + 1 layer + logits) | est. peak (+3 GB CUDA ctx/fragmentation) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for stage, c in counts.items():
        seq = int(c["p95_len"])
        act = activation_bytes(a, cfg.train.batch_size, seq, cfg.train.lora.dropout > 0)
        total = n * 2 + n_lora * 16 + sum(act.values()) + 3 * gb
        parts = " + ".join(f"{v / gb:.1f}" for v in act.values())
        print(f"| {stage} | {seq} | {n * 2 / gb:.1f} GB | {n_lora * 16 / gb:.1f} GB | {parts} GB | {total / gb:.0f} GB |")
    flops_per_token = 6 * n  # forward 2N + activation-gradient backward 2N + checkpoint recompute 2N
    print(f"\ntime per epoch = padded tokens x 6N FLOPs (+ attention 6*L*s*h per token) / ({mfu:.0%} MFU x peak):")
    print("| stage | GPU | TFLOP/epoch | tokens/s | min/epoch | epochs | min/stage |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for stage, c in counts.items():
        attn = 6 * a["layers"] * c["mean_len"] * a["hidden"]
        flops = c["padded_tokens"] * (flops_per_token + attn)
        epochs = (cfg.train.stage1 if stage == "stage1" else cfg.train.stage2).epochs
        for gpu, peak in GPU_PEAK.items():
            secs = flops / (mfu * peak)
            print(f"| {stage} | {gpu} | {flops / 1e12:,.0f} | {c['padded_tokens'] / secs:,.0f} | {secs / 60:.1f} | {epochs:g} | {secs * epochs / 60:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--chars-per-token", type=float, default=1.6, help="Korean chars per token when no tokenizer is given")
    ap.add_argument("--tokenizer-model", default=None, help="model.base spec whose tokenizer counts tokens for the estimate (e.g. gguf:gemma3-270m)")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--skip-cpu", action="store_true")
    args = ap.parse_args()
    import torch

    if not args.skip_cpu:
        print(f"## LoRA training steps, tiny-test model on CPU ({torch.get_num_threads()} threads; machine shared with other jobs)")
        rows = measure_cpu(args.runs, args.steps)
        print("| gradient checkpointing | median step (ms) | tokens/s | runs x steps |")
        print("| --- | ---: | ---: | ---: |")
        for row in rows:
            print(f"| {'on' if row['gradient_checkpointing'] else 'off'} | {row['step_ms']:.1f} | {row['tokens_per_s']:,.0f} | {row['runs']} x {row['steps']} |")
        print(f"checkpointing costs {rows[1]['step_ms'] / rows[0]['step_ms']:.2f}x step time")
    if (REPO.parent / "shared" / "data" / "nikl_culture_qa").is_dir():
        tokenizer = None
        if args.tokenizer_model:
            from krqa.generation.config import ModelConfig
            from krqa.generation.lm import load_tokenizer

            tokenizer = load_tokenizer(ModelConfig(base=args.tokenizer_model))
        estimate(args.chars_per_token, args.mfu, tokenizer)
    else:
        print("\n(8B estimate skipped: ../shared/data not found)")


if __name__ == "__main__":
    main()
