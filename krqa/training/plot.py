"""``loss_curve.png``: train loss per logged step and dev loss per epoch; each stage of the stage table drawn after
the one before, in the table's order, labels and colours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_path

def plot_loss_curve(metrics: dict[str, Any], out: Path, stages: list[tuple[str, str, str]]) -> Path | None:
    """One axis over the global step of the whole run, so the stage-2 start is visible as a jump in context;
    ``stages`` is the table's ``(name, label, colour)`` in training order."""
    import matplotlib  # start-up time: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # start-up time: as above, after the backend is set

    drawn = [(name, label, color) for name, label, color in stages if metrics.get(name, {}).get("train_loss")]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    offset = 0
    for stage, label, color in drawn:
        rec = metrics[stage]
        train = rec["train_loss"]
        ax.plot([offset + p["step"] for p in train], [p["loss"] for p in train], "-", color=color, alpha=0.8, label=f"{label} train")
        dev = rec.get("dev_loss") or []
        if dev:
            ax.plot([offset + p["step"] for p in dev], [p["loss"] for p in dev], "o--", color=color, markersize=5, label=f"{label} dev (per epoch)")
        if offset:
            ax.axvline(offset, color="grey", linestyle=":", linewidth=1)
        offset += int(rec.get("steps") or (train[-1]["step"] if train else 0))
    ax.set_xlabel("optimizer step (each stage continues after the one before)")
    ax.set_ylabel("loss (answer tokens; DPO: preference loss, GRPO: policy loss)")
    ax.set_title("krqa train")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
