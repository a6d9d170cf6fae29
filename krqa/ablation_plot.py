"""``ablation.png``: one panel per question type and one for the final, a bar per variant with its 95% interval.

Labels are in English because matplotlib's bundled font has no Hangul glyphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_path

PANELS = (("선다형", "MC accuracy"), ("단답형", "Short answer EM"), ("서술형", "Descriptive (mean of metrics run)"), ("final", "Final (mean of types)"))


def plot_ablation(result: dict[str, Any], out: Path) -> Path:
    import matplotlib  # start-up time: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up time: as above, after the backend is set

    rows = result["rows"]
    panels = [(key, title) for key, title in PANELS if any(key in r["scores"] for r in rows)]
    height = 1.2 + 0.38 * len(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 2.5, height), dpi=110, sharey=True, squeeze=False)
    names = [r["name"] for r in rows]
    ys = list(range(len(rows)))[::-1]
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for y, r in zip(ys, rows, strict=True):
            s = r["scores"].get(key)
            if s is None:
                continue
            color = "tab:grey" if r["name"] == result["baseline"] else "tab:blue" if r.get("rag") else "tab:orange"
            ax.barh(y, s["value"], color=color, alpha=0.75)
            ax.errorbar(s["value"], y, xerr=[[s["value"] - s["low"]], [s["high"] - s["value"]]], fmt="none", ecolor="black", capsize=3, linewidth=1)
            ax.text(0.02, y, f"{s['value']:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, 1.08)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(ys)
    axes[0][0].set_yticklabels(names, fontsize=8)
    fig.suptitle(f"krqa ablate: {result['items']} items, 95% bootstrap intervals (grey: baseline, blue: RAG, orange: no RAG)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
