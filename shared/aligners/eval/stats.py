"""Win rates and the papers' score with confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

Outcome = Literal["win", "tie", "loss"]
CIMethod = Literal["wilson", "bootstrap"]
OUTCOMES: tuple[Outcome, ...] = ("win", "tie", "loss")


class WinStats(BaseModel):
    """Outcomes of aligned vs original answers under one judge.

    ``win_rate`` drops ties: wins / (wins + losses). ``omega`` is the papers' score
    (wins - losses) / total, ties counted in the total; both come with a confidence interval.
    """

    wins: int = 0
    ties: int = 0
    losses: int = 0
    total: int = 0
    win_rate: float | None = Field(default=None, description="wins / (wins + losses); None if 0/0")
    win_rate_ci: tuple[float, float] | None = None
    omega: float | None = Field(default=None, description="(wins - losses) / total")
    omega_ci: tuple[float, float] | None = None
    ci_method: CIMethod = "wilson"
    confidence: float = 0.95


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (sane at 0, n and small n)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _omega_wilson(
    wins: int, ties: int, losses: int, confidence: float
) -> tuple[float, float] | None:
    # omega = P(win) - P(loss). Without a closed form for a trinomial difference, use
    # Newcombe's method: combine the Wilson intervals of both proportions.
    n = wins + ties + losses
    if n == 0:
        return None
    w_ci = wilson_interval(wins, n, confidence)
    l_ci = wilson_interval(losses, n, confidence)
    assert w_ci is not None and l_ci is not None
    pw, pl = wins / n, losses / n
    omega = pw - pl
    low = omega - math.sqrt((pw - w_ci[0]) ** 2 + (l_ci[1] - pl) ** 2)
    high = omega + math.sqrt((w_ci[1] - pw) ** 2 + (pl - l_ci[0]) ** 2)
    return (max(-1.0, low), min(1.0, high))


def _bootstrap(
    wins: int, ties: int, losses: int, confidence: float, samples: int, seed: int
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    import numpy as np

    n = wins + ties + losses
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins / n, ties / n, losses / n], size=samples)
    w, t, lo = draws[:, 0], draws[:, 1], draws[:, 2]
    alpha = (1 - confidence) / 2
    omega = (w - lo) / n
    omega_ci = (float(np.quantile(omega, alpha)), float(np.quantile(omega, 1 - alpha)))
    decided = w + lo
    if wins + losses == 0:
        return None, omega_ci
    rates = w[decided > 0] / decided[decided > 0]
    rate_ci = (float(np.quantile(rates, alpha)), float(np.quantile(rates, 1 - alpha)))
    del t
    return rate_ci, omega_ci


def win_stats(
    outcomes: Sequence[str],
    *,
    ci: CIMethod = "wilson",
    confidence: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> WinStats:
    """Count ``win``/``tie``/``loss`` outcomes; win rate (ties dropped) and omega with CIs.

    Example:
        >>> s = win_stats(["win", "win", "tie", "loss"])
        >>> s.win_rate, s.omega
        (0.6666666666666666, 0.25)
    """
    if isinstance(outcomes, str):
        raise TypeError("outcomes must be a sequence of 'win'/'tie'/'loss', not a single str")
    if ci not in ("wilson", "bootstrap"):
        raise ValueError(f"ci must be 'wilson' or 'bootstrap', got {ci!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    unknown = sorted({o for o in outcomes if o not in OUTCOMES})
    if unknown:
        raise ValueError(f"unknown outcomes {unknown}; expected win, tie or loss")
    wins = sum(o == "win" for o in outcomes)
    ties = sum(o == "tie" for o in outcomes)
    losses = sum(o == "loss" for o in outcomes)
    total = wins + ties + losses
    stats = WinStats(
        wins=wins, ties=ties, losses=losses, total=total, ci_method=ci, confidence=confidence
    )
    if wins + losses:
        stats.win_rate = wins / (wins + losses)
    if total:
        stats.omega = (wins - losses) / total
    if ci == "wilson":
        stats.win_rate_ci = wilson_interval(wins, wins + losses, confidence)
        stats.omega_ci = _omega_wilson(wins, ties, losses, confidence)
    else:
        stats.win_rate_ci, stats.omega_ci = _bootstrap(
            wins, ties, losses, confidence, samples, seed
        )
    return stats
