"""Pictures people would rather look at than read: PR curves and retrieval examples."""
from __future__ import annotations

import functools
import logging
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from .metrics import precision_recall_curve, relevance  # noqa: E402

log = logging.getLogger(__name__)

#: the Debian package that adds fonts for Chinese, Japanese and Korean text
CJK_FONT_PACKAGE = "fonts-noto-cjk"
#: fonts that draw a placeholder for every character: covering nothing in the sense we need
_PLACEHOLDER_FONTS = ("Last Resort",)


@functools.lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    """Code points a font file has glyphs for (empty when the file cannot be read)."""
    from matplotlib.ft2font import FT2Font
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def font_families(texts: Iterable[str]) -> tuple[list[str], set[str]]:
    """Font families that together draw every character of ``texts``, and what none covers.

    The default family comes first; installed fonts are added, in name order, only for
    characters it lacks (Chinese captions with DejaVu Sans used to come out as empty boxes).
    Matplotlib falls back through the list glyph by glyph.
    """
    default = list(matplotlib.rcParams["font.family"])
    chars = {ord(c) for t in texts for c in t if not c.isspace() and c.isprintable()}
    missing = chars - _charmap(font_manager.findfont(font_manager.FontProperties(
        family=default)))
    families = [*default]
    if missing:
        for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: (e.name, e.fname)):
            if entry.name in families or entry.name.startswith(_PLACEHOLDER_FONTS):
                continue
            covered = _charmap(entry.fname) & missing
            if covered:
                families.append(entry.name)
                missing -= covered
            if not missing:
                break
    return families, {chr(c) for c in missing}


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_text(text: str, width: int = 28, max_lines: int = 10) -> str:
    """Wrap to ``width`` columns (wide CJK characters count two and may break anywhere;
    other words break at spaces, or inside when longer than a line), at most ``max_lines``
    lines, the last one ending in "…" when text was cut. Keeps text inside its cell."""
    units = re.findall(r"\s+|[^\s]", text)
    words: list[str] = []  # runs of narrow non-space characters stay together
    for u in units:
        if words and not u.isspace() and all(_width(c) == 1 for c in u) and \
                not words[-1].isspace() and all(_width(c) == 1 for c in words[-1]):
            words[-1] += u
        else:
            words.append(u)
    lines, line, used = [], "", 0
    for w in words:
        if w.isspace():
            if line:
                line, used = line + " ", used + 1
            continue
        ww = sum(_width(c) for c in w)
        while ww > width - used and line.strip():
            lines.append(line.rstrip())
            line, used = "", 0
        while ww > width:  # a word longer than a line
            cut, cw = "", 0
            for c in w:
                if cw + _width(c) > width:
                    break
                cut, cw = cut + c, cw + _width(c)
            lines.append(cut)
            w, ww = w[len(cut):], ww - cw
        line, used = line + w, used + ww
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and sum(_width(c) for c in last) > width - 1:
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last + "…"]
    return "\n".join(lines)


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

    families, uncovered = font_families([*texts, *class_names])
    if uncovered:
        sample = "".join(sorted(uncovered)[:5])
        log.warning("%s: no installed font has glyphs for %d character(s) of the texts (e.g."
                    " %r); they are drawn as boxes. Install a font that covers them (for"
                    " Chinese, Japanese, Korean on Debian/Ubuntu: apt install %s)", path,
                    len(uncovered), sample, CJK_FONT_PACKAGE)
    with plt.rc_context({"font.family": families}), warnings.catch_warnings():
        if uncovered:  # said once above; matplotlib would repeat it for every glyph drawn
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing")
        return _draw_examples(scores_t2i, texts, images, labels, cls, path, queries, k)


def _draw_examples(scores_t2i, texts, images, labels, cls, path, queries, k) -> Path:

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
            ax.text(0.02, 0.98, wrap_text(texts[t]), va="top", fontsize=6.5,
                    transform=ax.transAxes, clip_on=True)
            ax.set_title(f"#{j + 1} {cls(labels[t])}\nscore {scores_t2i[t, q]:.3f}", fontsize=8,
                         color="green" if ok else "red")
    for r in range(n):  # text -> image
        q = r * max(1, len(texts) // max(n, 1)) + 1 if len(texts) > 1 else 0
        q = min(q, len(texts) - 1)
        ax = axes[n + r][0]
        ax.text(0.02, 0.98, wrap_text(texts[q]), va="top", fontsize=6.5,
                transform=ax.transAxes, clip_on=True)
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


def plot_recall_curves(scores_t2i: np.ndarray, text_image: Sequence[int], path: Path, *,
                       scores_i2t: np.ndarray | None = None,
                       first_stage: np.ndarray | None = None, title: str = "",
                       max_k: int = 50) -> Path:
    """Instance-level Recall@K for K = 1..``max_k``, both directions, with chance (and the
    first stage's curves, dashed, when a re-ranked ranking is shown)."""
    from .instance import chance_any, direction_report
    owner = np.asarray(text_image, dtype=np.int64)
    n_text, n_image = np.shape(scores_t2i)
    rel = owner[:, None] == np.arange(n_image)[None, :]
    i2t_scores = scores_t2i if scores_i2t is None else scores_i2t
    fig, ax = plt.subplots(figsize=(5, 4))
    ks_i2t = list(range(1, min(max_k, n_text) + 1))
    ks_t2i = list(range(1, min(max_k, n_image) + 1))

    def curve(scores, relevant, ks):
        rep = direction_report(scores, relevant, ks)
        return [rep[f"r@{k}"] for k in ks]

    ax.plot(ks_i2t, curve(np.asarray(i2t_scores).T, rel.T, ks_i2t), label="image→text", color="C0")
    ax.plot(ks_t2i, curve(np.asarray(scores_t2i), rel, ks_t2i), label="text→image", color="C1")
    if first_stage is not None:
        ax.plot(ks_i2t, curve(np.asarray(first_stage).T, rel.T, ks_i2t), color="C0", ls=":",
                label="image→text, first stage")
        ax.plot(ks_t2i, curve(np.asarray(first_stage), rel, ks_t2i), color="C1", ls=":",
                label="text→image, first stage")
    captions = np.bincount(owner, minlength=n_image)
    ax.plot(ks_i2t, [float(np.mean([chance_any(n_text, int(c), k) for c in captions]))
                     for k in ks_i2t], color="grey", ls="--", lw=1, label="chance, image→text")
    ax.plot(ks_t2i, [min(1.0, k / n_image) for k in ks_t2i], color="grey", ls="-.", lw=1,
            label="chance, text→image")
    ax.set(xlabel="K", ylabel="Recall@K", xscale="log", ylim=(0, 1.02),
           title=title or "instance-level recall")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def format_recall_table(metrics: dict, title: str = "") -> str:
    """Instance-level figures of one run: Recall@K both ways (in percent), rsum and median
    rank, with the first stage (when re-ranked) and chance below."""
    inst = metrics["instance"]
    ks = [key for key in inst["i2t"] if key.startswith("r@")]
    head = ("Method          " + "".join(f" I→T {k.upper():<5}" for k in ks)
            + "".join(f" T→I {k.upper():<5}" for k in ks) + "   rsum  medr I→T/T→I")

    def row(name: str, rep: dict) -> str:
        cells = "".join(f" {100 * rep['i2t'][k]:>9.1f}" for k in ks)
        cells += "".join(f" {100 * rep['t2i'][k]:>9.1f}" for k in ks)
        ranks = (f"  {rep['i2t']['medr']:>5.1f}/{rep['t2i']['medr']:<5.1f}"
                 if "medr" in rep["i2t"] else "")
        total = 100 * sum(rep["i2t"][k] + rep["t2i"][k] for k in ks)
        return f"{name:<15}{cells} {total:>6.1f}{ranks}"

    lines = [title] if title else []
    lines.append(head)
    lines.append(row("this run", inst))
    if "instance_first_stage" in metrics:
        lines.append(row("first stage", metrics["instance_first_stage"]))
    lines.append(row("chance", inst["chance"]))
    lines.append(f"({inst['images']} images, {inst['texts']} captions)")
    return "\n".join(lines)


def format_metrics(metrics: dict, what: str) -> str:
    """A run's test figures for the console: Recall@K under the instance protocol (with the
    class view's mAP below when the data has classes), the Table 1 layout otherwise.
    ``what`` follows each title, e.g. ``"(daer on shapes, 120 pairs)"``."""
    parts = []
    if metrics.get("protocol") == "instance":
        parts.append(format_recall_table(metrics, title=f"Test Recall@K in % {what}"))
    if "avg" in metrics:
        view = ", class view with each image once," if parts else ""
        parts.append(format_table1(metrics, title=f"Test mAP@all{view} {what}"))
    return "\n\n".join(parts)
