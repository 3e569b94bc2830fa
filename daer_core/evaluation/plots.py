"""Pictures people would rather look at than read: PR curves and retrieval examples."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import precision_recall_curve, relevance  # noqa: E402


def plot_pr_curves(scores_t2i: np.ndarray, text_labels, image_labels, path: Path,
                   title: str = "") -> Path:
    """Interpolated precision-recall curves for image->text and text->image."""
    rel = relevance(text_labels, image_labels)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s, r in (("image→text", scores_t2i.T, rel.T), ("text→image", scores_t2i, rel)):
        rec, prec = precision_recall_curve(s, r)
        ax.plot(rec, prec, label=name)
    base = rel.mean()
    ax.axhline(base, color="grey", ls="--", lw=1, label=f"random ranking ({base:.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=title or "precision-recall")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_retrieval_examples(scores_t2i: np.ndarray, texts: Sequence[str], images: Sequence,
                            labels: Sequence[Sequence[int]], class_names: Sequence[str],
                            path: Path, *, queries: int = 3, k: int = 3) -> Path:
    """A figure in the spirit of the paper's Figure 4: query, top-k results and labels.

    ``images`` are PIL images (or callables returning them) aligned with ``texts``.
    Results whose labels match the query's are framed green, others red.
    """
    def cls(labs):
        return ", ".join(class_names[i] for i in labs)

    def img(x):
        return x() if callable(x) else x

    n = min(queries, len(texts))
    rows = 2 * n
    fig, axes = plt.subplots(rows, k + 1, figsize=(2.6 * (k + 1), 2.4 * rows), squeeze=False)
    for r in range(n):  # image -> text
        q = r * max(1, len(texts) // max(n, 1))
        ax = axes[r][0]
        ax.imshow(img(images[q]))
        ax.set_title(f"image query\n{cls(labels[q])}", fontsize=8)
        order = np.argsort(-scores_t2i[:, q], kind="stable")[:k]
        for j, t in enumerate(order):
            ax = axes[r][j + 1]
            ok = bool(set(labels[t]) & set(labels[q]))
            ax.text(0.02, 0.98, textwrap.fill(texts[t][:160], 28), va="top", fontsize=6.5,
                    transform=ax.transAxes)
            ax.set_title(f"#{j + 1} {cls(labels[t])}\nscore {scores_t2i[t, q]:.3f}", fontsize=8,
                         color="green" if ok else "red")
    for r in range(n):  # text -> image
        q = r * max(1, len(texts) // max(n, 1)) + 1 if len(texts) > 1 else 0
        q = min(q, len(texts) - 1)
        ax = axes[n + r][0]
        ax.text(0.02, 0.98, textwrap.fill(texts[q][:160], 28), va="top", fontsize=6.5,
                transform=ax.transAxes)
        ax.set_title(f"text query\n{cls(labels[q])}", fontsize=8)
        order = np.argsort(-scores_t2i[q], kind="stable")[:k]
        for j, p in enumerate(order):
            ax = axes[n + r][j + 1]
            ax.imshow(img(images[p]))
            ok = bool(set(labels[p]) & set(labels[q]))
            ax.set_title(f"#{j + 1} {cls(labels[p])}\nscore {scores_t2i[q, p]:.3f}", fontsize=8,
                         color="green" if ok else "red")
    for row in axes:
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def format_table1(metrics: dict, title: str = "") -> str:
    """The paper's Table 1 layout for one method on one dataset."""
    lines = [title] if title else []
    lines += ["Method            Image→Text  Text→Image  Average",
              f"{'this run':<17} {metrics['i2t']:>10.3f}  {metrics['t2i']:>10.3f}  "
              f"{metrics['avg']:>7.3f}",
              f"{'chance':<17} {metrics['i2t_detail']['chance']:>10.3f}  "
              f"{metrics['t2i_detail']['chance']:>10.3f}  {metrics['chance']:>7.3f}"]
    return "\n".join(lines)
