"""The safety gate's rules (ROS-free): one policy target in, a checked target or a refusal with its reason out.

The checks, in order (the first that refuses ends it; every outcome is counted by reason):

  1. e-stop latched                     -> refuse `estop` (nothing passes until it is released)
  2. not active                         -> refuse `inactive`
  3. names (when given): unknown name   -> refuse `unknown_joint`; a missing or repeated one -> `missing_joint`
                                           (a complete set in another order is reordered to the profile's)
  4. length != the profile's commands   -> refuse `length`
  5. NaN or infinite value              -> refuse `non_finite`
  6. no measured state yet (positions; a delta with a workspace) -> refuse `no_state`
  7. position limits [lower, upper]     -> `on_limit: reject`: refuse `position_limit`; `clip`: clip, count
                                           `position_clipped`, go on
  8. rate limit: the change from the last commanded target (positions) or the delta itself is at most
     min(max_step, velocity / rate) x ramp, where ramp grows from 0 to 1 over `ramp_in` s after
     (re)activation (or from when the measured state is first complete); the ramp starts from the measured
     state -> clip, count `rate_limited`
  9. (effector_delta with a workspace) the effector target + delta stays inside it -> clip, count
     `workspace_clipped`
 10. passed -> count `passed`; this is the new last safe target.

The watchdog (`tick`, at the control rate): no fresh passed command for `watchdog_timeout` s while active
-> hold the last safe target (the measured state if there is none; a delta output: zero), once per lapse,
counted `watchdog`. An e-stop holds the measured arm joints (the robot stops where it is) and the grippers
at their last target (a grasp does not open), at once. A release re-arms with a new ramp-in from the
measured state.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from sefm_station.profiles import Profile

REASONS = ("passed", "estop", "inactive", "unknown_joint", "missing_joint", "length", "non_finite", "no_state",
           "position_limit", "position_clipped", "rate_limited", "workspace_clipped", "watchdog")
REFUSALS = ("estop", "inactive", "unknown_joint", "missing_joint", "length", "non_finite", "no_state",
            "position_limit")


@dataclass(frozen=True)
class Decision:
    """A checked target (command order, command units) or None and the reason it was refused; `notes`: the
    adjustments made on the way (position_clipped, rate_limited, workspace_clipped)."""
    target: np.ndarray | None
    reason: str = "passed"
    detail: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.target is not None


class Gate:
    """One robot's gate. Times are seconds on any monotonic clock, passed in by the caller."""

    def __init__(self, profile: Profile):
        self.profile = profile
        n = profile.size
        self.lower = np.asarray(profile.command.lower, dtype=np.float64)
        self.upper = np.asarray(profile.command.upper, dtype=np.float64)
        self.step_limit = profile.step_limit.astype(np.float64)
        ws = profile.output
        self.workspace = ((np.asarray(ws.workspace_lower, np.float64), np.asarray(ws.workspace_upper, np.float64))
                          if ws.workspace_lower else None)
        self.grippers = np.zeros(n, dtype=bool)
        for arm in profile.arms:
            if arm.gripper:
                self.grippers[profile.index(arm.commands[arm.joints.index(arm.gripper)])] = True
        self.names = {name: i for i, name in enumerate(profile.command.names)}
        self.measured = np.full(n, np.nan)
        self.last_target: np.ndarray | None = None
        self.active = False
        self.estopped = False
        self.holding = False           # the watchdog holds (until the next passed command)
        self.activated_at = 0.0
        self.last_passed: float | None = None
        self.counts: Counter = Counter({r: 0 for r in REASONS})

    # --- inputs -----------------------------------------------------------------------------------

    def set_measured(self, values: dict[str, float], now: float | None = None) -> None:
        """The driver's state in command units ({command name: value}, e.g. from Profile.measured). Activated
        before the state was complete, the ramp-in starts when it is (`now`)."""
        had = self.has_state
        for name, value in values.items():
            if name in self.names and np.isfinite(value):
                self.measured[self.names[name]] = value
        if not had and now is not None and self.active and self.last_target is None and self.has_state:
            self.activated_at = now

    @property
    def has_state(self) -> bool:
        return bool(np.all(np.isfinite(self.measured)))

    def needs_state(self) -> bool:
        return not self.profile.delta or self.workspace is not None

    def activate(self, now: float) -> None:
        """Start passing commands: the ramp-in starts now, from the measured state."""
        self.active, self.holding = True, False
        self.activated_at = now
        self.last_passed = now   # the watchdog counts from activation
        self.last_target = self._start()

    def deactivate(self) -> np.ndarray | None:
        """Stop passing; returns the hold target to send once (None: nothing known to hold)."""
        hold = self.hold_target() if self.active and not self.estopped else None
        self.active, self.holding = False, False
        return hold

    def estop(self, engaged: bool, now: float) -> np.ndarray | None:
        """Latch or release the e-stop. Returns the hold to publish at once (engaged while active), else None."""
        if engaged:
            if self.estopped:
                return None
            self.estopped = True
            hold = self.hold_target(stop=True) if self.active else None
            if hold is not None:
                self.last_target = hold
            return hold
        if self.estopped:
            self.estopped = False
            if self.active:   # re-armed: a new ramp-in from where the robot is
                self.activate(now)
        return None

    # --- the check --------------------------------------------------------------------------------

    def check(self, values, names=None, now: float = 0.0) -> Decision:
        d = self._check(values, names, now)
        self.counts[d.reason] += 1
        for note in d.notes:
            self.counts[note] += 1
        if d.ok:
            self.last_target, self.last_passed, self.holding = d.target, now, False
        return d

    def _check(self, values, names, now: float) -> Decision:
        p, n = self.profile, self.profile.size
        if self.estopped:
            return Decision(None, "estop", "e-stop engaged")
        if not self.active:
            return Decision(None, "inactive", "the gate is not active")
        values = np.asarray(values, dtype=np.float64).ravel()
        if names is not None and len(names):
            names = list(names)
            unknown = [x for x in names if x not in self.names]
            if unknown:
                return Decision(None, "unknown_joint", f"unknown command names {unknown}; "
                                                       f"the profile's: {list(p.command.names)}")
            if len(names) != len(values):
                return Decision(None, "length", f"{len(names)} names but {len(values)} values")
            if sorted(names) != sorted(p.command.names):
                missing = [x for x in p.command.names if x not in names]
                repeated = sorted({x for x in names if names.count(x) > 1})
                return Decision(None, "missing_joint", f"missing {missing}, repeated {repeated}")
            order = [names.index(x) for x in p.command.names]
            values = values[order]
        if len(values) != n:
            return Decision(None, "length", f"{len(values)} values for {n} commands")
        if not np.all(np.isfinite(values)):
            bad = [p.command.names[i] for i in np.flatnonzero(~np.isfinite(values))]
            return Decision(None, "non_finite", f"non-finite values for {bad}")
        if self.needs_state() and not self.has_state:
            unknown = [p.command.names[i] for i in np.flatnonzero(~np.isfinite(self.measured))]
            return Decision(None, "no_state", f"no measured state yet for {unknown}")
        notes = []
        outside = (values < self.lower) | (values > self.upper)
        if outside.any():
            said = ", ".join(f"{p.command.names[i]}={values[i]:.4g} not in [{self.lower[i]:.4g}, {self.upper[i]:.4g}]"
                             for i in np.flatnonzero(outside))
            if p.command.on_limit == "reject":
                return Decision(None, "position_limit", said)
            values = np.clip(values, self.lower, self.upper)
            notes.append("position_clipped")
        allowed = self.step_limit * self.ramp(now)
        if p.delta:
            limited = np.clip(values, -allowed, allowed)
        else:
            base = self.last_target if self.last_target is not None else self.measured
            limited = base + np.clip(values - base, -allowed, allowed)
        if not np.allclose(limited, values, rtol=0.0, atol=1e-12):
            notes.append("rate_limited")
        if p.delta and self.workspace is not None:
            moved = np.clip(self.measured + limited, *self.workspace) - self.measured
            if not np.allclose(moved, limited, rtol=0.0, atol=1e-12):
                notes.append("workspace_clipped")
            limited = moved
        return Decision(limited, "passed", "", tuple(notes))

    def ramp(self, now: float) -> float:
        ramp_in = self.profile.control.ramp_in
        if ramp_in <= 0.0:
            return 1.0
        return float(np.clip((now - self.activated_at) / ramp_in, 0.0, 1.0))

    # --- holding ----------------------------------------------------------------------------------

    def tick(self, now: float) -> np.ndarray | None:
        """The watchdog, at the control rate: the hold target to publish when commands just stopped."""
        if not self.active or self.estopped or self.holding:
            return None
        if self.last_passed is not None and now - self.last_passed <= self.profile.control.watchdog_timeout:
            return None
        hold = self.hold_target()
        self.holding = True
        self.counts["watchdog"] += 1
        if hold is not None:
            self.last_target = hold
        return hold

    def hold_target(self, stop: bool = False) -> np.ndarray | None:
        """What keeps the robot where it is: a delta output zero; positions the last safe target (or the
        measured state if none). `stop` (the e-stop): the measured arm joints, the grippers' last target."""
        if self.profile.delta:
            return np.zeros(self.profile.size)
        if stop and self.has_state:
            hold = self.measured.copy()
            if self.last_target is not None:
                hold[self.grippers] = self.last_target[self.grippers]
            return np.clip(hold, self.lower, self.upper)
        if self.last_target is not None:
            return self.last_target.copy()
        return np.clip(self.measured, self.lower, self.upper) if self.has_state else None

    def _start(self) -> np.ndarray | None:
        if self.profile.delta:
            return None
        return np.clip(self.measured, self.lower, self.upper) if self.has_state else None

    @property
    def state(self) -> str:
        return "estopped" if self.estopped else "holding" if self.holding and self.active else \
            "active" if self.active else "inactive"

    def status(self) -> dict:
        """The counters and the gate's state, for `safety_status`."""
        return {"state": self.state, "has_state": self.has_state, "counts": dict(self.counts)}
