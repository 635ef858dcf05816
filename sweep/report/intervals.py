"""95% confidence intervals of a mean over a few seeds: Student's t, computed here (no scipy).

For an integer number of degrees of freedom the t distribution's two-sided probability has a closed
form (Abramowitz & Stegun 26.7.3/26.7.4, a finite series in cos θ with θ = atan(t / √ν)); the quantile
is found by bisection on it, so every ν gets its exact value, not a table's rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

CONFIDENCE = 0.95


def t_central_probability(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's T with `df` (≥ 1, integer) degrees of freedom."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    term, total = 1.0, 0.0
    if (
        df % 2 == 1
    ):  # 2/π (θ + sin θ cos θ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ...)), df - 2 terms of the series
        if df > 1:
            total = term
            for k in range(3, df - 1, 2):
                term *= (k - 1) / k * cos2
                total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    total = term  # sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ...), df / 2 terms
    for k in range(2, df - 1, 2):
        term *= (k - 1) / k * cos2
        total += term
    return math.sin(theta) * total


@lru_cache(maxsize=256)
def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The t with P(|T| ≤ t) = `confidence`: t_{0.975, df} for the default 95%."""
    if df < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, not {df}")
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < confidence:
        high *= 2
    for _ in range(200):  # bisection to float precision; 200 halvings are more than enough
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_central_probability(middle, df) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the `confidence` interval of the mean of `n` values of sample std `std` (NaN: n < 2)."""
    if n < 2 or math.isnan(std):
        return math.nan
    return t_quantile(n - 1, confidence) * std / math.sqrt(n)
