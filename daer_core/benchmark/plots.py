"""Bar plot of mAP per method and dataset, in the manner of the paper's Figure 5."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import METRICS, ResultIndex


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
