"""The ``features`` layout: pre-extracted image and text features for baselines and heads.

Two layouts are recognised from the keys found:

* the published Wikipedia ``raw_features.mat``: ``I_tr``/``I_te`` (128-d SIFT bag of visual
  words), ``T_tr``/``T_te`` (10-d LDA) and ``T_tfidf_tr``/``T_tfidf_te`` (1000-d TF-IDF), rows in
  the order of the standard lists, whose labels (1-based there, 0-based here) and text ids
  are read from ``trainset_txt_img_cat.list`` / ``testset_txt_img_cat.list`` beside the file;
* the common ``train_img`` / ``train_txt`` / ``train_lab`` layout (also ``test_``, and
  ``val_`` / ``valid_`` / ``validation_``), in one ``.mat`` or ``.npz`` file or a folder of
  ``<key>.npy`` files. Labels may be class indices (0- or 1-based; detected, or set
  ``label_base``) or ``(N, C)`` multi-hot rows.

``root`` is the file, or a folder holding ``raw_features.mat``, one ``.mat``/``.npz`` file, or
``.npy`` files. A validation part can be carved from train (``val_fraction``) when the file
has none. MATLAB v7.3 files are HDF5, which scipy cannot read: the error says how to convert.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from daer_core.data.files import FolderIndex
from daer_core.data.splits import carve
from daer_core.errors import DataError
from daer_core.interfaces.data import (SPLITS, DataReport, FeatureDataset, FeatureSplit,
                                       SplitName)
from registry import Params

from .common import ProblemLog, preview, raise_if_errors, read_class_names
from .wikipedia import read_standard_lists

WIKI_KEYS = {"image": ("I_tr", "I_te"), "lda": ("T_tr", "T_te"),
             "tfidf": ("T_tfidf_tr", "T_tfidf_te")}
SPLIT_PREFIXES: dict[str, tuple[str, ...]] = {
    "train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
PART_SUFFIXES = {"image": ("img", "image"), "text": ("txt", "text"),
                 "labels": ("lab", "label", "labels")}


class FeaturesParams(Params):
    """Params of the ``features`` layout."""

    root: str = Field(..., description="a .mat/.npz file, or a folder with raw_features.mat, "
                                       "one .mat/.npz file, or <key>.npy files")
    text_feature: Literal["lda", "tfidf"] = Field(
        "lda", description="Wikipedia raw_features.mat: which text feature (10-d LDA topics "
                           "or 1000-d TF-IDF)")
    lists_dir: str | None = Field(
        None, description="Wikipedia: folder of the standard list files and categories.list "
                          "(default: the feature file's folder; a relative path is relative to it)")
    train_list: str = Field("trainset_txt_img_cat.list", description="Wikipedia train list")
    test_list: str = Field("testset_txt_img_cat.list", description="Wikipedia test list")
    classes_file: str | None = Field(
        None, description="class names, one per line (default: categories.list or "
                          "classes.txt beside the features if present, else class_<k>; a relative path is "
                          "relative to the features' folder)")
    label_base: Literal["auto", "0", "1"] = Field(
        "auto", description="index labels: 1 means 1-based (shifted to 0-based); auto treats "
                            "labels as 1-based when no split contains a 0")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="carve this seeded fraction "
                                "of train into a validation split when the file has none")
    seed: int = Field(0, ge=0, description="seed of the validation carve")


class LoadedFeatures(FeatureDataset):
    """Aligned feature matrices per split, with the report of how they were found."""

    def __init__(self, root: str, classes: list[str], splits: dict[str, FeatureSplit],
                 problems: ProblemLog, info: dict):
        self.root = root
        self.classes = classes
        self._splits = splits
        self.problems = list(problems)
        self.info = info

    def features(self, split: SplitName) -> FeatureSplit:
        if split not in self._splits:
            have = ", ".join(self._splits) or "none"
            raise KeyError(f"features at {self.root} have no {split!r} split (have: {have}; "
                           "set val_fraction to carve a validation split from train)")
        return self._splits[split]

    def report(self) -> DataReport:
        rep = DataReport("features", self.root, list(self.classes),
                         problems=list(self.problems), info=dict(self.info))
        for s in SPLITS:
            fs = self._splits.get(s)
            rep.counts[s] = 0 if fs is None else len(fs.labels)
            per = np.zeros(len(self.classes), dtype=int)
            if fs is not None and len(fs.labels):
                per = (fs.labels.sum(0).astype(int) if fs.labels.ndim == 2
                       else np.bincount(fs.labels, minlength=len(self.classes)))
            rep.class_counts[s] = {c: int(n) for c, n in zip(self.classes, per)}
        return rep


# -- reading ----------------------------------------------------------------------------------
def find_source(root: Path) -> Path:
    """The feature file or .npy folder that ``root`` designates."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"features: {root} does not exist")
    if (root / "raw_features.mat").is_file():
        return root / "raw_features.mat"
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".mat", ".npz"))
    if len(files) == 1:
        return files[0]
    if any(p.suffix.lower() == ".npy" for p in root.iterdir()):
        return root
    if files:
        raise DataError(f"features: {root} holds several feature files "
                        f"({', '.join(p.name for p in files)}); pass one as PATH/root")
    raise DataError(f"features: no .mat, .npz or .npy files in {root}")


def read_arrays(source: Path) -> dict[str, np.ndarray]:
    """Every array in a .mat / .npz file or a folder of .npy files, keyed by name.

    A file that cannot be read (corrupt, or holding pickled objects, which are never loaded)
    raises :class:`DataError` naming it.
    """
    try:
        return _read_arrays(source)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError) as exc:
        raise DataError(f"features: cannot read {source}: {type(exc).__name__}: {exc}") from None


def _read_arrays(source: Path) -> dict[str, np.ndarray]:
    suffix = source.suffix.lower()
    if source.is_dir():
        return {p.stem: np.load(p, allow_pickle=False) for p in sorted(source.glob("*.npy"))}
    if suffix == ".npz":
        with np.load(source, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if suffix == ".npy":
        return {source.stem: np.load(source, allow_pickle=False)}
    if suffix == ".mat":
        head = source.read_bytes()[:128]
        if b"MATLAB 7.3" in head:
            raise DataError(f"{source} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; "
                            "re-save it in MATLAB with save(..., '-v7') or convert it to .npz")
        import scipy.io
        import scipy.sparse
        try:
            raw = scipy.io.loadmat(source)
        except (ValueError, TypeError, OSError) as exc:
            raise DataError(f"cannot read {source} as a MATLAB file: {exc}") from None
        return {k: (v.toarray() if scipy.sparse.issparse(v) else v)
                for k, v in raw.items() if not k.startswith("__")}
    raise DataError(f"features: unsupported file type {source.name} (use .mat, .npz, .npy)")


def _find_key(arrays: dict[str, np.ndarray], split: str, part: str) -> str | None:
    lower = {k.lower(): k for k in arrays}
    for prefix in SPLIT_PREFIXES[split]:
        for suffix in PART_SUFFIXES[part]:
            key = lower.get(f"{prefix}_{suffix}")
            if key is not None:
                return key
    return None


def _matrix(arrays, key: str, source: Path) -> np.ndarray:
    arr = np.asarray(arrays[key])
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{source}: {key} must be a 2-D numeric matrix, got shape {arr.shape} "
                        f"and dtype {arr.dtype}")
    return arr.astype(np.float32)


def _labels(arr: np.ndarray, key: str, source: Path) -> np.ndarray:
    """``(N,)`` integer indices or ``(N, C)`` multi-hot (C > 1) rows."""
    arr = np.asarray(arr)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim == 2:
        if not np.isin(arr, (0, 1)).all():
            raise DataError(f"{source}: {key} is a matrix but not 0/1 multi-hot")
        return arr.astype(np.int64)
    if arr.ndim != 1 or not np.all(np.asarray(arr) == np.round(arr)):
        raise DataError(f"{source}: {key} must hold integer class labels, got shape "
                        f"{arr.shape} and dtype {arr.dtype}")
    return arr.astype(np.int64)


def _load_wikipedia(params: FeaturesParams, source: Path, arrays, problems: ProblemLog,
                    info: dict):
    # relative lists_dir / classes_file are relative to the folder holding the features file
    lists_dir = source.parent / params.lists_dir if params.lists_dir else source.parent
    cat_file = (source.parent / params.classes_file if params.classes_file
                else lists_dir / "categories.list")
    if not cat_file.is_file():
        raise DataError(f"features: {source.name} is the Wikipedia layout, whose labels come "
                        f"from the standard lists; class names file not found: {cat_file} "
                        "(set lists_dir)")
    classes = read_class_names(cat_file)
    texts_dir = lists_dir / "texts"
    known = FolderIndex.build(texts_dir, (".xml", ".txt")).by_stem if texts_dir.is_dir() else {}
    lists = read_standard_lists(lists_dir, params.train_list, params.test_list, len(classes),
                                known, problems)
    splits = {}
    for split, idx in (("train", 0), ("test", 1)):
        img_key, txt_key = WIKI_KEYS["image"][idx], WIKI_KEYS[params.text_feature][idx]
        for key in (img_key, txt_key):
            if key not in arrays:
                raise DataError(f"{source}: key {key} not found (have: "
                                f"{', '.join(sorted(arrays))})")
        entries = lists[split]
        image, text = _matrix(arrays, img_key, source), _matrix(arrays, txt_key, source)
        if not (len(image) == len(text) == len(entries)):
            problems.add("misaligned_rows", f"{split}: {img_key} has {len(image)} rows, "
                         f"{txt_key} {len(text)}, the {split} list {len(entries)} rows; they "
                         "must follow the list order one to one", [split])
            continue
        labels = np.array([e.label - 1 for e in entries], dtype=np.int64)
        splits[split] = FeatureSplit(image, text, labels, [e.id for e in entries])
        info.setdefault("keys", {})[split] = {"image": img_key, "text": txt_key,
                                              "labels": params.train_list if split == "train"
                                              else params.test_list}
    info.update(layout="wikipedia-raw-features", text_feature=params.text_feature,
                label_source="standard list files (1-based there, 0-based here)")
    return classes, splits


def _load_common(params: FeaturesParams, source: Path, arrays, problems: ProblemLog,
                 info: dict):
    splits: dict[str, FeatureSplit] = {}
    for split in SPLITS:
        keys = {part: _find_key(arrays, split, part) for part in PART_SUFFIXES}
        if not any(keys.values()):
            continue
        absent = [p for p, k in keys.items() if k is None]
        if absent:
            found = ", ".join(k for k in keys.values() if k)
            problems.add("incomplete_split", f"{split}: found {found} but no "
                         f"{' / '.join(absent)} array", [split])
            continue
        image, text = _matrix(arrays, keys["image"], source), _matrix(arrays, keys["text"], source)
        labels = _labels(arrays[keys["labels"]], keys["labels"], source)
        if not (len(image) == len(text) == len(labels)):
            problems.add("misaligned_rows", f"{split}: {keys['image']} has {len(image)} rows, "
                         f"{keys['text']} {len(text)}, {keys['labels']} {len(labels)}", [split])
            continue
        splits[split] = FeatureSplit(image, text, labels)
        info.setdefault("keys", {})[split] = keys
    if "train" not in splits and not problems.errors:
        raise DataError(f"{source}: no train split found; expected arrays named train_img, "
                        f"train_txt, train_lab (have: {', '.join(sorted(arrays)) or 'none'})")
    index_labels = [s.labels for s in splits.values() if s.labels.ndim == 1]
    base = params.label_base
    if base == "auto":
        base = "1" if index_labels and all(len(l) == 0 or l.min() >= 1 for l in index_labels) \
            else "0"
    if base == "1":
        for s in splits.values():
            if s.labels.ndim == 1:
                if len(s.labels) and s.labels.min() < 1:
                    raise DataError(f"{source}: label_base is 1 but a label is below 1")
                s.labels = s.labels - 1
    widths = {s.labels.shape[1] for s in splits.values() if s.labels.ndim == 2}
    top = max([int(l.max()) + 1 for s in splits.values() if s.labels.ndim == 1
               for l in [s.labels] if len(l)] + list(widths) + [0])
    if index_labels and any(l.min(initial=0) < 0 for l in index_labels):
        problems.add("bad_label", "negative class labels", [s for s in splits])
    classes = _class_names(params, source, top)
    if len(classes) < top:
        problems.add("bad_label", f"labels go up to {top - 1} but only {len(classes)} class "
                     "names are given", [])
    info.update(layout="split-arrays", label_base=int(base))
    return classes, splits


def _class_names(params: FeaturesParams, source: Path, num: int) -> list[str]:
    folder = source if source.is_dir() else source.parent
    for cand in ([folder / params.classes_file] if params.classes_file else
                 [folder / "categories.list", folder / "classes.txt"]):
        if cand.is_file():
            return read_class_names(cand)
        if params.classes_file:
            raise DataError(f"features: classes_file not found: {cand}")
    return [f"class_{k}" for k in range(num)]


def load_features(params: FeaturesParams, *, check: bool = False) -> LoadedFeatures:
    """Find and read the features; problems are raised, or collected when ``check``."""
    source = find_source(Path(params.root))
    arrays = read_arrays(source)
    problems = ProblemLog()
    info: dict = {"source": str(source)}
    if all(k in arrays for k in WIKI_KEYS["image"]):
        classes, splits = _load_wikipedia(params, source, arrays, problems, info)
    else:
        classes, splits = _load_common(params, source, arrays, problems, info)
    for name, fs in splits.items():
        for part, mat in (("image", fs.image), ("text", fs.text)):
            bad = ~np.isfinite(mat).all(axis=1)
            if bad.any():
                rows = [str(i) for i in np.flatnonzero(bad)]
                problems.add("non_finite_features", f"{name} {part} rows with NaN or inf "
                             f"(row indices): {preview(rows)}", rows)
    if params.val_fraction > 0 and "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = _carve(splits["train"], params.val_fraction,
                                                params.seed)
        info["val_carved_from_train"] = params.val_fraction
    for part in ("image", "text"):
        widths = {name: int(getattr(fs, part).shape[1]) for name, fs in splits.items()}
        if len(set(widths.values())) > 1:
            problems.add("feature_width_mismatch", f"{part} features differ in width between "
                         f"splits: " + ", ".join(f"{k} {v}" for k, v in widths.items()),
                         list(widths))
    info["dims"] = {"image": next((int(s.image.shape[1]) for s in splits.values()), None),
                    "text": next((int(s.text.shape[1]) for s in splits.values()), None)}
    info["multi_label"] = any(s.labels.ndim == 2 for s in splits.values())
    if not check:
        raise_if_errors("features", params.root, problems)
    return LoadedFeatures(str(params.root), classes, splits, problems, info)


def _carve(fs: FeatureSplit, fraction: float, seed: int) -> tuple[FeatureSplit, FeatureSplit]:
    keep, val = carve(list(range(len(fs.labels))), fraction, seed)

    def take(idx: list[int]) -> FeatureSplit:
        return FeatureSplit(fs.image[idx], fs.text[idx], fs.labels[idx],
                            None if fs.ids is None else [fs.ids[i] for i in idx])
    return take(keep), take(val)


def make_features(params: FeaturesParams, check: bool = False) -> LoadedFeatures:
    """Pre-extracted features (.mat/.npz/.npy): Wikipedia raw_features.mat or
    train_img/train_txt/train_lab arrays.
    """
    return load_features(params, check=check)
