"""Student's t quantiles against a textbook table, and the interval half-width built on them."""

from __future__ import annotations

import math

import pytest

from sweep.report.intervals import half_width, t_quantile

# t_{0.975, df} as printed in statistics tables (6 decimals).
TEXTBOOK = {
    1: 12.706205,
    2: 4.302653,
    3: 3.182446,
    4: 2.776445,
    5: 2.570582,
    10: 2.228139,
    30: 2.042272,
    120: 1.979930,
}


@pytest.mark.parametrize(("df", "value"), sorted(TEXTBOOK.items()))
def test_t_quantile_matches_the_textbook(df: int, value: float) -> None:
    assert t_quantile(df) == pytest.approx(value, abs=1e-6)


def test_t_quantile_tends_to_the_normal_quantile() -> None:
    assert t_quantile(100_000) == pytest.approx(1.959964, abs=1e-4)


def test_half_width_is_t_times_the_standard_error_and_nan_for_one_value() -> None:
    assert half_width(0.3, 4) == pytest.approx(3.182446 * 0.3 / 2, abs=1e-6)
    assert math.isnan(half_width(0.3, 1)) and math.isnan(half_width(math.nan, 3))
