"""Win rate, omega and their confidence intervals."""

from __future__ import annotations

import pytest

from aligners.eval import wilson_interval, win_stats


def test_counts_drop_ties_from_win_rate_but_not_from_omega() -> None:
    stats = win_stats(["win"] * 6 + ["tie"] * 3 + ["loss"] * 1)
    assert (stats.wins, stats.ties, stats.losses, stats.total) == (6, 3, 1, 10)
    assert stats.win_rate == pytest.approx(6 / 7)
    assert stats.omega == pytest.approx((6 - 1) / 10)


def test_wilson_interval_matches_the_textbook_value() -> None:
    # 0 successes of 10 at 95%: the Wilson upper bound is z^2/(n+z^2) = 0.2775.
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-3)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(1 - high)


@pytest.mark.parametrize("ci", ["wilson", "bootstrap"])
def test_intervals_contain_the_estimate_and_shrink_with_more_data(ci: str) -> None:
    small = win_stats(["win", "win", "loss", "tie"], ci=ci)  # type: ignore[arg-type]
    large = win_stats(["win", "win", "loss", "tie"] * 25, ci=ci)  # type: ignore[arg-type]
    for stats in (small, large):
        assert stats.win_rate_ci is not None and stats.omega_ci is not None
        assert stats.win_rate_ci[0] <= stats.win_rate <= stats.win_rate_ci[1]
        assert stats.omega_ci[0] <= stats.omega <= stats.omega_ci[1]
    width = lambda s: s.omega_ci[1] - s.omega_ci[0]  # noqa: E731
    assert width(large) < width(small)


def test_all_ties_has_omega_zero_and_no_win_rate() -> None:
    stats = win_stats(["tie"] * 4)
    assert stats.win_rate is None and stats.win_rate_ci is None
    assert stats.omega == 0.0


def test_empty_and_bad_input() -> None:
    empty = win_stats([])
    assert empty.total == 0 and empty.omega is None and empty.omega_ci is None
    with pytest.raises(ValueError, match="unknown outcomes"):
        win_stats(["win", "draw"])
    with pytest.raises(TypeError):
        win_stats("win")
    with pytest.raises(ValueError, match="ci must be"):
        win_stats(["win"], ci="exact")  # type: ignore[arg-type]
