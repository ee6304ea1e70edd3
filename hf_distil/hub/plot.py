"""The loss plot the card embeds: the total loss and every logged term over optimizer steps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILE = "loss_terms.png"


def loss_figure(log_history: list[dict[str, Any]]) -> Figure | None:
    """A figure of `loss` and each `loss_<term>` of Trainer's `log_history` over steps; None when nothing was logged.

    The y axis is logarithmic: the terms differ by orders of magnitude (L_ce is scaled by T², L_cos is a cosine).
    """
    from matplotlib.figure import Figure

    logs = [h for h in log_history if "loss" in h and "step" in h]
    if not logs:
        return None
    keys = ["loss"] + sorted({k for h in logs for k in h if k.startswith("loss_")})
    figure = Figure(figsize=(7, 4))  # not pyplot's: no display and no global figure registry
    ax = figure.subplots()
    for key in keys:
        points = [(h["step"], h[key]) for h in logs if key in h]
        ax.plot(*zip(*points), label=key, linewidth=2 if key == "loss" else 1)
    ax.set_title("Training loss and its terms")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (weighted total; each term unweighted)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_loss_terms(log_history: list[dict[str, Any]], path: str | Path) -> bool:
    """Write `loss_figure` as a PNG at `path`; False (and no file) when nothing was logged."""
    figure = loss_figure(log_history)
    if figure is None:
        return False
    figure.savefig(path, dpi=100)
    return True
