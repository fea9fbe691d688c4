"""The seed plan: every reset seed SEFM uses comes from one of these named, disjoint ranges.

A reset seed picks an episode's start state, so two uses that share a seed share
a start state: an evaluation that overlaps the training demos is not held out.
Every command takes its seeds from this table, and a seed flag that leaves its
range (and so may meet another) is an error before anything runs.

| range        | seeds                   | per station            | used by |
|--------------|-------------------------|------------------------|---------|
| train_demos  | 0 .. 9,999,999          | 1,000,000 per station  | `sefm demos`, `sefm collect` (the demos Stage 1 trains on; its validation split is a held-out share of these episodes, by episode: `split.json`) |
| test_demos   | 10,000,000 .. 10,999,999 | one block              | held-out demos for steps-to-go quality (`sefm collect --seeds test_demos`) |
| eval         | 20,000,000 .. 20,999,999 | one block              | held-out policy evaluation (`sefm eval`, `sefm practice`'s evaluations) |
| practice     | 30,000,000 .. 39,999,999 | 100,000 per station    | Stage 2 practice (`sefm improve` station k, `sefm practice`, `sefm bench graph`) |
| calibration  | 40,000,000 .. 40,999,999 | one block              | the detector's rollouts on the policy's own states (`sefm detector`) |

The bench's arms are independent experiments: each arm draws from the same
ranges (a smaller demo budget is a prefix of a larger one), never from another
range's seeds.
"""
from __future__ import annotations

from dataclasses import dataclass


class SeedPlanError(ValueError):
    """Seeds outside their range: they may be another range's (a clear error before anything runs)."""


@dataclass(frozen=True)
class SeedRange:
    name: str
    start: int
    size: int
    station_stride: int = 0    # > 0: station k owns [start + k * stride, start + (k + 1) * stride)

    @property
    def end(self) -> int:      # one past the last seed
        return self.start + self.size

    @property
    def stations(self) -> int:
        return self.size // self.station_stride if self.station_stride else 1

    def block(self, station: int = 0) -> tuple[int, int]:
        """[first, end) of one station's seeds (the whole range when it has no per-station blocks)."""
        if not 0 <= station < self.stations:
            raise SeedPlanError(f"seed range {self.name} has blocks for stations 0..{self.stations - 1}, "
                                f"not station {station}")
        if not self.station_stride:
            return self.start, self.end
        first = self.start + station * self.station_stride
        return first, first + self.station_stride


PLAN = {r.name: r for r in (
    SeedRange("train_demos", 0, 10_000_000, 1_000_000),
    SeedRange("test_demos", 10_000_000, 1_000_000),
    SeedRange("eval", 20_000_000, 1_000_000),
    SeedRange("practice", 30_000_000, 10_000_000, 100_000),
    SeedRange("calibration", 40_000_000, 1_000_000),
)}
ROLES = tuple(PLAN)


def seed_range(role: str) -> SeedRange:
    try:
        return PLAN[role]
    except KeyError:
        raise SeedPlanError(f"unknown seed range {role!r}; valid: {', '.join(ROLES)}") from None


def first_seed(role: str, station: int = 0) -> int:
    """The first seed of `role` (of one station's block)."""
    return seed_range(role).block(station)[0]


def station_seeds(role: str, stations: int, count: int, first: int | None = None) -> list[int]:
    """The first seed of each of `stations` stations that each use up to `count` consecutive seeds of `role`.
    `first` (a user's choice) moves station 0's start; station k starts one block later per station."""
    r = seed_range(role)
    base = r.block(0)[0] if first is None else first
    stride = r.station_stride
    if stations > 1 and not stride:
        raise SeedPlanError(f"seed range {role} has no per-station blocks")
    starts = [base + k * stride for k in range(stations)]
    for k, s in enumerate(starts):
        check(role, s, count, station=k)
    return starts


def check(role: str, first: int, count: int, station: int | None = None) -> tuple[int, int]:
    """Raise SeedPlanError unless seeds [first, first + count) lie inside `role`'s range (or the station's
    block of it); the message names the range they leave for. Returns (first, count)."""
    r = seed_range(role)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise SeedPlanError(f"seed {first!r}: seeds are integers >= 0")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise SeedPlanError(f"seed count {count!r}: an integer >= 0")
    low, high = r.block(station or 0) if station is not None else (r.start, r.end)
    where = f"{role}" + (f" station {station}" if station is not None and r.station_stride else "")
    if count and not (low <= first and first + count <= high):
        others = [o.name for o in PLAN.values() if o.name != role and first < o.end and o.start < first + count]
        clash = f"; they overlap {', '.join(others)}" if others else ""
        raise SeedPlanError(f"seeds {first}..{first + count - 1} ({count}) leave the {where} range "
                            f"{low}..{high - 1}{clash} (sefm_core.seeds)")
    return first, count


def describe(used: dict[str, tuple[int, int] | list[tuple[int, int]]]) -> dict:
    """{role: {"range": [start, end - 1], "used": [[first, last], ...]}}: what a report states it used."""
    out = {}
    for role, spans in used.items():
        spans = [spans] if isinstance(spans, tuple) else list(spans)
        r = seed_range(role)
        out[role] = {"range": [r.start, r.end - 1], "used": [[f, f + n - 1] for f, n in spans if n > 0]}
    return out
