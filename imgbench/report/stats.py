"""The statistics the report needs to say "how sure": 95% confidence intervals across repeats, Welch's
t-test between two sets of repeats, the verdict on a claim, and how far a percentile can be trusted.

Only run-to-run variation (one value per repeat: per seed, per load-point repeat) decides whether a
difference is real. Epoch-to-epoch spread within one run, or a binomial error over the evaluation
images, says nothing about the next run and is never used for a verdict.

    >>> ci95([0.90, 0.92, 0.94]).half_width
    0.0496...
    >>> compare([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], expected_sign=+1).verdict
    'supported'
    >>> compare([0.9], [0.8], expected_sign=+1).verdict
    'cannot tell'
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats as scipy_stats

from imgbench.errors import ImgbenchError

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
TEST_NAME = "Welch's t-test, two-sided, α = 0.05, on one value per repeat"

Verdict = Literal["supported", "contradicted", "not distinguishable", "cannot tell"]

# Below these sample counts a tail percentile is a handful of requests (p99 of 290 is the 3rd-slowest).
MIN_SAMPLES = {99.0: 1_000, 99.9: 10_000}
TAIL_SAMPLES = 10  # what MIN_SAMPLES amounts to: ten requests beyond the percentile
UNRELIABLE_MARK = "†"
UNRELIABLE_NOTE = (
    f"{UNRELIABLE_MARK} unreliable: a p99 from fewer than {MIN_SAMPLES[99.0]:,} samples, or a p99.9 from "
    f"fewer than {MIN_SAMPLES[99.9]:,}, rests on fewer than ten requests."
)


@dataclass(frozen=True)
class Interval:
    """Mean and the half-width of its 95% confidence interval (Student t) across ``n`` repeats;
    ``half_width`` is None with one repeat: one run cannot tell run-to-run noise."""

    mean: float
    half_width: float | None
    n: int
    stdev: float | None = None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def format(self, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
        """``'0.92 ± 0.05 (n=3)'``; with one repeat ``'0.92 (n=1, no CI)'``."""
        mean = f"{self.mean * scale:,.{digits}f}{unit}"
        if self.half_width is None:
            return f"{mean} (n={self.n}, no CI)"
        return f"{mean} ± {self.half_width * scale:,.{digits}f}{unit} (n={self.n})"

    def __str__(self) -> str:
        return self.format()


def t_quantile(df: float) -> float:
    """The two-sided 95% Student t critical value for ``df`` degrees of freedom."""
    if df <= 0:
        raise ImgbenchError(f"degrees of freedom must be positive, got df={df}")
    return float(scipy_stats.t.ppf(1 - ALPHA / 2, df))


def ci95(values: Sequence[float]) -> Interval:
    """Mean ± the 95% Student t interval of ``values`` (one per repeat)."""
    if not values:
        raise ImgbenchError("ci95 needs at least one value, got none")
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, None, n)
    stdev = statistics.stdev(values)
    return Interval(mean, t_quantile(n - 1) * stdev / math.sqrt(n), n, stdev)


@dataclass(frozen=True)
class Comparison:
    """A against B across repeats: the difference of the means, Welch's p-value, and the verdict on
    the claim that the difference has ``expected_sign``."""

    a: Interval
    b: Interval
    difference: float
    p_value: float | None
    verdict: Verdict

    @property
    def n(self) -> int:
        return min(self.a.n, self.b.n)

    def explain(self) -> str:
        """The verdict with what it rests on, for a report cell."""
        if self.verdict == "cannot tell":
            return (
                f"cannot tell: {self.a.n} vs {self.b.n} repeat(s); one run per side says nothing about "
                "run-to-run variation (rerun with --repeats 2 or more)"
            )
        test = f"Welch p={self.p_value:.3f}, n={self.a.n} vs {self.b.n}"
        if self.verdict == "not distinguishable":
            return f"not distinguishable at this n ({test})"
        return f"{self.verdict} ({test})"


def welch_p_value(a: Interval, b: Interval) -> float:
    """Two-sided p-value of Welch's t-test from two intervals' means, standard deviations and n."""
    if a.n < 2 or b.n < 2 or a.stdev is None or b.stdev is None:
        raise ImgbenchError(f"Welch's t-test needs two repeats per side, got n={a.n} and n={b.n}")
    if a.stdev == 0 and b.stdev == 0:
        return 1.0 if a.mean == b.mean else 0.0
    result = scipy_stats.ttest_ind_from_stats(
        a.mean, a.stdev, a.n, b.mean, b.stdev, b.n, equal_var=False, alternative="two-sided"
    )
    return float(result.pvalue)


def compare(a: Sequence[float], b: Sequence[float], expected_sign: int) -> Comparison:
    """Is mean(a) − mean(b) of sign ``expected_sign`` (+1 or −1), judged across repeats?

    ``supported``: Welch's test rejects equal means (p < 0.05) and the difference has the expected sign;
    ``contradicted``: it rejects them with the opposite sign; ``not distinguishable``: it does not
    reject; ``cannot tell``: a side has a single repeat.
    """
    if expected_sign not in (1, -1):
        raise ImgbenchError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    left, right = ci95(a), ci95(b)
    difference = left.mean - right.mean
    if left.n < 2 or right.n < 2:
        return Comparison(left, right, difference, None, "cannot tell")
    p_value = welch_p_value(left, right)
    if math.isnan(p_value) or p_value >= ALPHA:
        verdict: Verdict = "not distinguishable"
    else:
        verdict = "supported" if difference * expected_sign > 0 else "contradicted"
    return Comparison(left, right, difference, p_value, verdict)


def steady_state(values: list[float]) -> list[float]:
    """Drop the first epoch when there are others: it pays for compilation, caches and warm-up."""
    return values[1:] if len(values) > 1 else values


def percentile_reliable(percentile: float, n: int) -> bool:
    """False for a p99 from fewer than 1,000 samples or a p99.9 from fewer than 10,000: from p99 up, the
    tail beyond the percentile must hold at least ten samples (so the maximum never is one)."""
    if percentile < min(MIN_SAMPLES):
        return True
    if percentile >= 100:
        return False
    return n * (1 - percentile / 100) >= TAIL_SAMPLES - 1e-9


def percentile_cell(value: float | None, percentile: float, n: int, digits: int = 2) -> str | None:
    """``'12.34'``, or ``'12.34†'`` when too few samples back the percentile (see ``UNRELIABLE_NOTE``)."""
    if value is None:
        return None
    mark = "" if percentile_reliable(percentile, n) else UNRELIABLE_MARK
    return f"{value:,.{digits}f}{mark}"
