"""The regression guard: Stage 2 keeps its best policy and rolls back when practice makes it worse.

The paper names performance that falls after a peak as a limitation. A real fleet has no simulator to notice,
so the guard judges by what the stations themselves decide: the share of practice episodes that ended as a
success (the learned detector's SUCCESS_DETECTED or the operator's OPERATOR_SUCCESS; never the simulator's).
Every `guard_every` versions it closes a window: the window's rate is credited to the version the window
started from (the policy that acted first in it; later ones differ by a few small updates). A window better
than every earlier one makes its version the best; a window more than `guard_drop` below the best rolls the
policy back: the trainer's next version is the best version's weights (and optimizer state), and practice goes
on from there. The windows are the practice episodes themselves (sampled actions, the practice seeds), not
separate held-out episodes: on a robot they cost nothing extra.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RegressionGuard:
    every: int
    drop: float
    best_version: int = 0
    best_rate: float = -1.0
    window_start: int = 0
    successes: int = 0
    episodes: int = 0
    history: list = field(default_factory=list)   # one row per closed window

    def observe(self, version: int, successes: int, episodes: int) -> int | None:
        """The update that made `version` trained on `episodes` practice episodes (of version - 1), `successes`
        of them judged a success by the station. Returns the version to roll back to, or None."""
        if self.every <= 0:
            return None
        self.successes += successes
        self.episodes += episodes
        if version - self.window_start < self.every:
            return None
        rate = self.successes / self.episodes if self.episodes else 0.0
        row = {"versions": [self.window_start, version - 1], "credited": self.window_start, "rate": rate,
               "episodes": self.episodes, "best_version": self.best_version, "best_rate": self.best_rate}
        rollback = None
        if rate > self.best_rate:
            self.best_version, self.best_rate = self.window_start, rate
            row["decision"] = "best"
        elif rate < self.best_rate - self.drop:
            rollback = self.best_version
            row["decision"] = f"roll back to v{rollback}"
        else:
            row["decision"] = "keep"
        self.history.append(row)
        self.window_start, self.successes, self.episodes = version, 0, 0
        return rollback

    def summary(self) -> dict:
        return {"every": self.every, "drop": self.drop, "best_version": self.best_version, "best_rate": self.best_rate,
                "window_start": self.window_start, "successes": self.successes, "episodes": self.episodes,
                "windows": self.history}

    @classmethod
    def resume(cls, summary: dict) -> "RegressionGuard":
        """The guard a restarted trainer goes on with (its `summary()`)."""
        return cls(summary["every"], summary["drop"], summary["best_version"], summary["best_rate"],
                   summary["window_start"], summary["successes"], summary["episodes"], list(summary["windows"]))
