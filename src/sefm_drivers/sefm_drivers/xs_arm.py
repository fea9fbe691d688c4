"""One Interbotix X-Series arm (vx300s with gripper) as its `xs_sdk` driver presents it, without ROS.

The motors' side of the contract: names, groups, limits, operating modes and their units, torque, profiles,
registers and the three command kinds, all checked before anything reaches the simulated motors. The node
(`sefm_drivers.aloha_driver`) only turns messages into calls here and `targets()` into actuator targets.

Units follow each motor's operating mode, as on the real driver:
  position, extended_position, current_based_position  rad (the gripper: its motor angle)
  linear_position (gripper only)                       m, the separation of the two fingers (2 x left_finger)
  velocity                                             rad/s (the target moves at that speed, up to the limits)
  current, pwm                                         accepted and stored, but the simulated motor holds its
                                                       last position target (no current or PWM model)
A command is all-or-nothing: a wrong length, an unknown name, a NaN or infinity, an arm angle outside its
limits, a speed above the velocity limit, or a torqued-off motor refuses the whole command (a `RequestError`
with the reason). Gripper targets are clipped to the fingers' travel (its mechanical stops), as a
current-limited gripper stops at them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
MOTORS = ARM_JOINTS + ("gripper",)
STATE_NAMES = MOTORS + ("left_finger", "right_finger")    # joint_states order
GROUPS = {"arm": ARM_JOINTS, "all": MOTORS}
MOTOR_IDS = {"waist": 1, "shoulder": 2, "elbow": 4, "forearm_roll": 6, "wrist_angle": 7, "wrist_rotate": 8,
             "gripper": 9, "left_finger": 9}     # vx300s Dynamixel ids (shoulder and elbow have shadows 3, 5)
# The documented vx300s limits (rad): used where the MJCF gives none.
VX300S_LIMITS = {"waist": (-math.pi + 1e-5, math.pi - 1e-5), "shoulder": (math.radians(-106), math.radians(72)),
                 "elbow": (math.radians(-101), math.radians(92)), "forearm_roll": (-math.pi + 1e-5, math.pi - 1e-5),
                 "wrist_angle": (math.radians(-107), math.radians(128)),
                 "wrist_rotate": (-math.pi + 1e-5, math.pi - 1e-5)}
FINGER_LIMITS = (0.021, 0.057)    # left_finger travel (m)
VELOCITY_LIMIT = math.pi           # rad/s, every joint
SLEEP = {"waist": 0.0, "shoulder": -2.05, "elbow": 1.7, "forearm_roll": 0.0, "wrist_angle": -2.0,
         "wrist_rotate": 0.0, "gripper": 0.0}
POSITION_MODES = ("position", "extended_position", "current_based_position")
HELD_MODES = ("current", "pwm")
ARM_MODES = POSITION_MODES + ("velocity",) + HELD_MODES
GRIPPER_MODES = ARM_MODES + ("linear_position",)
PROFILE_TYPES = ("velocity", "time")
PROFILE_VELOCITY_UNIT = 0.229 * 2 * math.pi / 60   # rad/s per unit of Profile_Velocity (velocity profile)
TICKS_PER_RAD = 4096 / (2 * math.pi)               # Dynamixel position ticks; 2048 = 0 rad
# Registers a client may read and write (Dynamixel X control-table names); Present_* are read-only.
REGISTER_DEFAULTS = {"Position_P_Gain": 800, "Position_I_Gain": 0, "Position_D_Gain": 0,
                     "Feedforward_1st_Gain": 0, "Feedforward_2nd_Gain": 0, "Velocity_P_Gain": 100,
                     "Velocity_I_Gain": 1920, "Current_Limit": 1193, "Velocity_Limit": 131, "Goal_Current": 0,
                     "Goal_PWM": 0, "Goal_Velocity": 0, "Return_Delay_Time": 0, "Drive_Mode": 0}
LIVE_REGISTERS = ("Torque_Enable", "Operating_Mode", "Goal_Position", "Present_Position", "Present_Velocity",
                  "Present_Current", "Profile_Velocity", "Profile_Acceleration")
READ_ONLY = ("Present_Position", "Present_Velocity", "Present_Current", "Operating_Mode", "Goal_Position")
OPERATING_MODE_VALUES = {"current": 0, "velocity": 1, "position": 3, "extended_position": 4,
                         "current_based_position": 5, "linear_position": 5, "pwm": 16}


class RequestError(ValueError):
    """A request or command the driver refuses (the reason is the message; nothing was changed)."""


@dataclass(frozen=True)
class GripperProfile:
    """The gripper motor's angle (rad) <-> the left finger's position (m): linear through two points."""
    open_rad: float = 1.4910
    closed_rad: float = -0.6213
    open_m: float = 0.05800
    closed_m: float = 0.01844

    def to_finger(self, rad: float) -> float:
        return self.closed_m + (rad - self.closed_rad) * (self.open_m - self.closed_m) / (self.open_rad - self.closed_rad)

    def to_rad(self, finger: float) -> float:
        return self.closed_rad + (finger - self.closed_m) * (self.open_rad - self.closed_rad) / (self.open_m - self.closed_m)

    @property
    def rad_range(self) -> tuple[float, float]:
        return min(self.open_rad, self.closed_rad), max(self.open_rad, self.closed_rad)


@dataclass
class Motor:
    name: str
    lower: float                   # rad (the gripper: its profile's motor range)
    upper: float
    target: float = 0.0            # position target (rad)
    mode: str = "position"
    profile_type: str = "velocity"
    profile_velocity: int = 0      # velocity profile: 0.229 rpm units (0: no limit); time profile: ms of a move
    profile_acceleration: int = 0  # stored; the simulated motors do not shape acceleration
    torque: bool = True
    velocity: float = 0.0          # velocity mode: the commanded speed (rad/s)
    ramp: tuple[float, float, float, float] | None = None   # (start, goal, start time, duration): a profiled move
    registers: dict = field(default_factory=lambda: dict(REGISTER_DEFAULTS))


class XSArm:
    """The motors of one arm. `present` callbacks are not stored: the caller passes present positions where
    a request needs them (torque on: the target becomes the present position, so nothing jumps)."""

    def __init__(self, arm_limits: dict[str, tuple[float, float]] | None = None,
                 finger_limits: tuple[float, float] = FINGER_LIMITS, gripper: GripperProfile = GripperProfile(),
                 start: dict[str, float] | None = None, torque: bool = True):
        limits = {**VX300S_LIMITS, **(arm_limits or {})}
        self.gripper = gripper
        self.finger_limits = finger_limits
        low, high = gripper.rad_range
        self.motors = {j: Motor(j, *limits[j]) for j in ARM_JOINTS}
        self.motors["gripper"] = Motor("gripper", low, high, mode="current_based_position")
        for m in self.motors.values():
            m.torque = torque
        self.time = 0.0            # the arm's own clock (s), advanced by tick()
        self.trajectory: dict | None = None
        self.reset(start or {})

    # --- names ------------------------------------------------------------------------------

    def resolve(self, cmd_type: str, name: str) -> tuple[str, ...]:
        if cmd_type == "group":
            if name not in GROUPS:
                raise RequestError(f"unknown group {name!r}; groups: {', '.join(GROUPS)}")
            return GROUPS[name]
        if cmd_type == "single":
            if name not in self.motors:
                raise RequestError(f"unknown joint {name!r}; joints: {', '.join(MOTORS)}")
            return (name,)
        raise RequestError(f"cmd_type {cmd_type!r}: expected 'group' or 'single'")

    # --- state -------------------------------------------------------------------------------

    def reset(self, start: dict[str, float]) -> None:
        """Targets to `start` (rad; the gripper as motor angle), no motion in progress (a simulator reset)."""
        for name, m in self.motors.items():
            m.target = float(start.get(name, m.target))
            m.velocity, m.ramp = 0.0, None
        self.trajectory = None

    def targets(self) -> tuple[np.ndarray, float]:
        """(the 6 arm position targets in rad, the left finger's target in m, clipped to its travel)."""
        arm = np.array([self.motors[j].target for j in ARM_JOINTS])
        finger = float(np.clip(self.gripper.to_finger(self.motors["gripper"].target), *self.finger_limits))
        return arm, finger

    def torqued(self, name: str) -> bool:
        return self.motors[name].torque

    def tick(self, dt: float) -> None:
        """Advance the arm's clock by `dt` s: trajectories, profiled moves and velocity mode move the targets."""
        self.time += dt
        if self.trajectory is not None:
            tr = self.trajectory
            s = self.time - tr["start"]
            for k, name in enumerate(tr["names"]):
                self.motors[name].target = float(np.interp(s, tr["times"], tr["points"][:, k]))
            if s >= tr["times"][-1]:
                self.trajectory = None
        for m in self.motors.values():
            if not m.torque:
                continue
            if m.ramp is not None:
                start, goal, t0, duration = m.ramp
                f = 1.0 if duration <= 0 else min(1.0, (self.time - t0) / duration)
                m.target = start + (goal - start) * f
                if f >= 1.0:
                    m.ramp = None
            elif m.mode == "velocity" and m.velocity:
                m.target = float(np.clip(m.target + m.velocity * dt, m.lower, m.upper))

    # --- services ----------------------------------------------------------------------------

    def robot_info(self, cmd_type: str, name: str) -> dict:
        names = self.resolve(cmd_type, name)
        first = self.motors[names[0]]
        info = {"mode": first.mode, "profile_type": first.profile_type, "joint_names": [], "joint_ids": [],
                "joint_lower_limits": [], "joint_upper_limits": [], "joint_velocity_limits": [],
                "joint_sleep_positions": [], "joint_state_indices": [], "num_joints": len(names), "name": [name]}
        for j in names:
            m = self.motors[j]
            if cmd_type == "single" and j == "gripper":   # answered as the finger, in metres
                j, lower, upper = "left_finger", *self.finger_limits
                sleep = float(np.clip(self.gripper.to_finger(SLEEP["gripper"]), *self.finger_limits))
            else:
                lower, upper, sleep = m.lower, m.upper, SLEEP[j]
            info["joint_names"].append(j)
            info["joint_ids"].append(MOTOR_IDS[j])
            info["joint_lower_limits"].append(lower)
            info["joint_upper_limits"].append(upper)
            info["joint_velocity_limits"].append(VELOCITY_LIMIT)
            info["joint_sleep_positions"].append(sleep)
            info["joint_state_indices"].append(STATE_NAMES.index(j))
        return info

    def set_operating_modes(self, cmd_type: str, name: str, mode: str, profile_type: str = "velocity",
                            profile_velocity: int = 0, profile_acceleration: int = 0) -> None:
        names = self.resolve(cmd_type, name)
        for j in names:
            valid = GRIPPER_MODES if j == "gripper" else ARM_MODES
            if mode not in valid:
                raise RequestError(f"{j}: unknown operating mode {mode!r}; valid: {', '.join(valid)}")
        profile_type = profile_type or "velocity"
        if profile_type not in PROFILE_TYPES:
            raise RequestError(f"profile_type {profile_type!r}: expected one of {', '.join(PROFILE_TYPES)}")
        if profile_velocity < 0 or profile_acceleration < 0:
            raise RequestError("profile_velocity and profile_acceleration must be >= 0")
        for j in names:
            m = self.motors[j]
            m.mode, m.profile_type = mode, profile_type
            m.profile_velocity, m.profile_acceleration = int(profile_velocity), int(profile_acceleration)
            m.velocity, m.ramp = 0.0, None

    def torque_enable(self, cmd_type: str, name: str, enable: bool, present: dict[str, float]) -> None:
        """Torque on: the motor holds where it is (target = present position); off: it goes limp."""
        names = self.resolve(cmd_type, name)
        for j in names:
            m = self.motors[j]
            if enable and not m.torque:
                m.target = float(present[j])
            m.torque, m.velocity, m.ramp = bool(enable), 0.0, None
        if not enable and self.trajectory is not None and set(names) & set(self.trajectory["names"]):
            self.trajectory = None

    def set_gains(self, cmd_type: str, name: str, **gains: int) -> None:
        registers = {"kp_pos": "Position_P_Gain", "ki_pos": "Position_I_Gain", "kd_pos": "Position_D_Gain",
                     "k1": "Feedforward_1st_Gain", "k2": "Feedforward_2nd_Gain", "kp_vel": "Velocity_P_Gain",
                     "ki_vel": "Velocity_I_Gain"}
        for j in self.resolve(cmd_type, name):
            for key, value in gains.items():
                self.motors[j].registers[registers[key]] = int(value)

    def set_register(self, cmd_type: str, name: str, reg: str, value: int, present: dict[str, float]) -> None:
        names = self.resolve(cmd_type, name)
        if reg in READ_ONLY:
            raise RequestError(f"register {reg} is read-only here")
        if reg not in REGISTER_DEFAULTS and reg not in LIVE_REGISTERS:
            raise RequestError(f"unknown register {reg!r}; known: {', '.join(sorted(REGISTER_DEFAULTS) + list(LIVE_REGISTERS))}")
        if reg == "Torque_Enable":
            self.torque_enable(cmd_type, name, bool(value), present)
            return
        if value < 0 and reg in ("Profile_Velocity", "Profile_Acceleration"):
            raise RequestError(f"{reg} must be >= 0")
        for j in names:
            m = self.motors[j]
            if reg == "Profile_Velocity":
                m.profile_velocity = int(value)
            elif reg == "Profile_Acceleration":
                m.profile_acceleration = int(value)
            else:
                m.registers[reg] = int(value)

    def get_register(self, cmd_type: str, name: str, reg: str, present: dict[str, float],
                     velocity: dict[str, float]) -> list[int]:
        names = self.resolve(cmd_type, name)
        if reg not in REGISTER_DEFAULTS and reg not in LIVE_REGISTERS:
            raise RequestError(f"unknown register {reg!r}")
        out = []
        for j in names:
            m = self.motors[j]
            live = {"Torque_Enable": int(m.torque), "Operating_Mode": OPERATING_MODE_VALUES[m.mode],
                    "Goal_Position": round(m.target * TICKS_PER_RAD) + 2048,
                    "Present_Position": round(present[j] * TICKS_PER_RAD) + 2048,
                    "Present_Velocity": round(velocity[j] / PROFILE_VELOCITY_UNIT), "Present_Current": 0,
                    "Profile_Velocity": m.profile_velocity, "Profile_Acceleration": m.profile_acceleration}
            out.append(int(live[reg] if reg in live else m.registers[reg]))
        return out

    # --- commands ----------------------------------------------------------------------------

    def _position_of(self, m: Motor, value: float) -> float:
        """A position-type command in the motor's mode units -> its target (rad), or a RequestError."""
        if m.mode == "linear_position":    # finger separation (m) -> left finger -> motor angle
            finger = float(np.clip(value / 2.0, *self.finger_limits))
            return self.gripper.to_rad(finger)
        if m.name == "gripper":
            return float(np.clip(value, m.lower, m.upper))
        if not m.lower <= value <= m.upper:
            raise RequestError(f"{m.name}: {value:.4f} rad is outside its limits [{m.lower:.4f}, {m.upper:.4f}]")
        return float(value)

    def _check(self, names, values) -> list[float]:
        values = [float(v) for v in values]
        if len(values) != len(names):
            raise RequestError(f"{len(values)} values for {len(names)} joints ({', '.join(names)})")
        bad = [n for n, v in zip(names, values) if not math.isfinite(v)]
        if bad:
            raise RequestError(f"non-finite command for {', '.join(bad)}: {values}")
        off = [n for n in names if not self.motors[n].torque]
        if off:
            raise RequestError(f"torque is off for {', '.join(off)}: the motors do not follow commands")
        if self.trajectory is not None and set(names) & set(self.trajectory["names"]):
            raise RequestError("a trajectory is running for these joints")
        return values

    def command(self, names: tuple[str, ...], values) -> list[str]:
        """Apply a joint command in each motor's mode units (all or nothing); returns notes to log (held modes)."""
        values = self._check(names, values)
        plan, notes = [], []
        for n, v in zip(names, values):
            m = self.motors[n]
            if m.mode in HELD_MODES:
                notes.append(f"{n}: {m.mode} mode is not simulated; the motor holds its position")
                plan.append((m, "held", None))
            elif m.mode == "velocity":
                if abs(v) > VELOCITY_LIMIT:
                    raise RequestError(f"{n}: {v:.3f} rad/s exceeds the velocity limit {VELOCITY_LIMIT:.4f}")
                plan.append((m, "velocity", v))
            else:
                plan.append((m, "position", self._position_of(m, v)))
        for m, kind, value in plan:
            if kind == "velocity":
                m.velocity = value
            elif kind == "position":
                self._move(m, value)
        return notes

    def _move(self, m: Motor, goal: float) -> None:
        duration = 0.0
        if m.profile_type == "time" and m.profile_velocity > 0:
            duration = m.profile_velocity / 1000.0
        elif m.profile_type == "velocity" and m.profile_velocity > 0:
            duration = abs(goal - m.target) / (m.profile_velocity * PROFILE_VELOCITY_UNIT)
        if duration > 0:
            m.ramp = (m.target, goal, self.time, duration)
        else:
            m.target, m.ramp = goal, None

    def group_command(self, name: str, cmd) -> list[str]:
        return self.command(self.resolve("group", name), cmd)

    def single_command(self, name: str, cmd: float) -> list[str]:
        return self.command(self.resolve("single", name), [cmd])

    def start_trajectory(self, cmd_type: str, name: str, times, points) -> None:
        """Follow `points` (one row per point, in the mode's position units) at `times` (s from now), linearly
        interpolated, on this arm's clock."""
        names = self.resolve(cmd_type, name)
        if self.trajectory is not None:
            raise RequestError("a trajectory is already running")
        if len(points) < 2:
            raise RequestError(f"a trajectory needs at least 2 points, got {len(points)}")
        for n in names:
            if self.motors[n].mode not in POSITION_MODES + ("linear_position",):
                raise RequestError(f"{n}: trajectories need a position mode, not {self.motors[n].mode}")
        times = [float(t) for t in times]
        if not all(math.isfinite(t) for t in times) or any(b < a for a, b in zip(times, times[1:])) \
                or times[-1] <= times[0] or times[0] < 0:
            raise RequestError(f"time_from_start must be finite, >= 0, non-decreasing and end later: {times}")
        rows = []
        for row in points:
            values = self._check(names, row)
            rows.append([self._position_of(self.motors[n], v) for n, v in zip(names, values)])
        for n in names:
            self.motors[n].velocity, self.motors[n].ramp = 0.0, None
        self.trajectory = {"names": names, "times": np.array(times), "points": np.array(rows), "start": self.time}
