"""Small statistics used by every report: success rates with confidence intervals."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}] ({self.successes}/{self.trials})"


def wilson(successes: int, trials: int, z: float = 1.959964) -> Rate:
    """Success rate with its Wilson score interval (95% by default); sound at 0% and 100%."""
    if trials <= 0:
        return Rate(successes, trials, float("nan"), float("nan"))
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} outside 0..trials={trials}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Rate(successes, trials, max(0.0, centre - half), min(1.0, centre + half))
