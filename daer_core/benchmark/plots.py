"""Bar plots of the benchmark: mAP per method and dataset, in the manner of the paper's
Figure 5, and rsum per method and dataset for instance-level cells."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .report import METRICS, ResultIndex
from .stats import summarise


def plot_map_bars(index: ResultIndex, path: Path) -> Path:
    """Three panels (image->text, text->image, average); bars = methods, groups = datasets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, datasets = index.methods, index.datasets
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(datasets))
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(datasets) * 3, 4), sharey=True)
    for ax, (metric, title) in zip(axes, METRICS):
        for i, m in enumerate(methods):
            stats = [index.summary(m, d, metric) for d in datasets]
            means = [s.mean if s.n else 0.0 for s in stats]
            errs = [0.0 if (s.n < 2) else s.std for s in stats]
            ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=errs, capsize=2, label=m)
        ax.set_title(title)
        ax.set_xticks(x, [index.label(d) for d in datasets])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mAP")
    axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rsum_bars(index: ResultIndex, path: Path) -> Path:
    """rsum (mean ± std over runs) of instance-level cells: groups = datasets, a bar per
    method and, for a re-ranked method, a hatched bar of its first stage next to it (the
    re-ranking gain at a glance); a dashed line per dataset marks chance. One panel: rsum
    already sums the six Recall@K values the table lists one by one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = index.datasets
    bars: list[tuple[str, str, str, bool]] = []  # (method, label, attribute, first stage?)
    for m in index.methods:
        bars.append((m, m, "rsum", False))
        if any(c.reranked for d in datasets for c in index.cells(m, d)):
            bars.append((m, f"{m} (first stage)", "first_stage_rsum", True))
    width = 0.8 / max(1, len(bars))
    x = np.arange(len(datasets))
    fig, ax = plt.subplots(figsize=(3 + 1.6 * len(datasets) + 0.3 * len(bars), 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = -1
    for i, (method, label, attr, first) in enumerate(bars):
        colour += 0 if first else 1   # a first stage shares its method's colour
        stats = [summarise(getattr(c, attr) for c in index.cells(method, d)
                           if not first or c.reranked) for d in datasets]
        means = [s.mean if s.n else 0.0 for s in stats]
        errs = [0.0 if s.n < 2 else s.std for s in stats]
        ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=errs, capsize=2, label=label,
               color=colours[colour % len(colours)], alpha=0.55 if first else 1.0,
               hatch="//" if first else None, edgecolor="black" if first else None)
    for j, d in enumerate(datasets):
        chance = [c.chance_rsum for m in index.methods for c in index.cells(m, d)
                  if math.isfinite(c.chance_rsum)]
        if chance:
            ax.hlines(float(np.mean(chance)), j - 0.45, j + 0.45, colors="grey",
                      linestyles="dashed", label="chance" if j == 0 else None)
    ax.set_xticks(x, [index.label(d) for d in datasets])
    ax.set_ylabel("rsum (sum of Recall@K, %)")
    ax.set_title("Instance-level retrieval")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
