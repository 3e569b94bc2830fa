"""Summary statistics of runs and the paired Wilcoxon signed-rank test of Table 2."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Summary:
    mean: float
    std: float          # sample standard deviation (ddof=1); NaN for a single run
    n: int


def summarise(values) -> Summary:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return Summary(float("nan"), float("nan"), 0)
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return Summary(float(arr.mean()), std, int(arr.size))


@dataclass
class PairedTest:
    p: float | None     # None when the test is undefined (no runs, no differences)
    n: int              # paired runs with a non-zero difference
    note: str = ""


def wilcoxon_paired(reference: dict[int, float], other: dict[int, float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test over the runs both methods finished.

    Pairs are matched by run index (same seed, same training resample). Runs with equal
    scores carry no sign and are dropped (Wilcoxon's convention), so ``n`` can be below the
    number of runs.
    """
    from scipy.stats import wilcoxon

    runs = sorted(set(reference) & set(other))
    a = np.array([reference[r] for r in runs], dtype=float)
    b = np.array([other[r] for r in runs], dtype=float)
    if len(runs) == 0:
        return PairedTest(None, 0, "no paired runs")
    diff = a - b
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        return PairedTest(None, 0, "identical scores in every run")
    result = wilcoxon(a, b, alternative="two-sided", zero_method="wilcox")
    return PairedTest(float(result.pvalue), nonzero)


def smallest_exact_p(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with ``n`` pairs."""
    return 2.0 / 2 ** n if n > 0 else 1.0


def runs_needed(threshold: float) -> int:
    """Fewest pairs whose smallest exact two-sided p-value is below ``threshold``."""
    n = 1
    while smallest_exact_p(n) >= threshold:
        n += 1
    return n
