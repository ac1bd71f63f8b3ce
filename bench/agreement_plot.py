"""One figure of agreement with the float model along a model's cuts, one panel per setting (bits, widths)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


class Panel(NamedTuple):
    title: str
    points: list[str]  # the cuts along the x axis
    series: dict[str, tuple[list[float], str]]  # label -> (one value per point, matplotlib style)


def agreement_figure(path: Path, panels: list[Panel], ylabel: str, title: str, fontsize: int = 7) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(13, 4.5), sharey=True)
    for ax, panel in zip(axes, panels, strict=True):
        for label, (values, style) in panel.series.items():
            ax.plot(range(len(values)), values, style, ms=3, label=label)
        ax.set_title(panel.title)
        ax.set_xticks(range(len(panel.points)), panel.points, rotation=75, fontsize=fontsize)
        ax.axhline(0.99, color="grey", lw=0.6)
        ax.axhline(0.95, color="grey", lw=0.6, ls=":")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def save_result(out: Path, result: dict[str, Any], plot: Callable[[dict[str, Any], Path], None]) -> None:
    """The result as JSON at ``out`` and its figure beside it (same name, .png)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
