"""Robot profiles: what the safety gate needs to know about one robot and its driver (ROS-free).

A profile is a YAML file checked against the frozen dataclasses below with `sefm_core.config.from_dict`
(an unknown key, a wrong type or a bad choice is an error naming the key) and then across fields
(`Profile.check`: unique names, ordered limits, arrays as long as the command, every command served by
one arm, ...). Shipped profiles live in this package's `profiles/` folder (installed to
share/sefm_station/profiles) and are found by name; any other profile by its path.

The command layout is the policy's action order (`command.names`): the vector the policy publishes on
`joint_command` and the gate checks. Each arm maps some of those commands to its driver's joints, in the
order its driver takes them; a gripper command is normalised (0 closed .. 1 open) and converted with the
profile's gripper constants (joint rad for the command, finger m for the measured state).
"""
from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sefm_core.config import ConfigError, from_dict, load_yaml, setting

OutputType = Literal["interbotix", "ros2_control_forward", "joint_trajectory", "effector_delta"]
PROFILE_DIR = pathlib.Path(__file__).resolve().parent.parent / "profiles"   # the source tree (editable install)


class ProfileError(ConfigError):
    """A profile that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True)
class CommandLayout:
    """The policy's command vector, one entry per name, in action order."""
    names: tuple[str, ...] = setting((), "command names in the policy's action order")
    lower: tuple[float, ...] = setting((), "per command: lowest allowed value (rad, m, or normalised gripper "
                                           "0..1; an effector_delta output: the delta's lower bound in m)")
    upper: tuple[float, ...] = setting((), "per command: highest allowed value")
    velocity: tuple[float, ...] = setting((), "per command: velocity limit (units/s); a step may change a "
                                              "command by at most velocity / rate_hz")
    max_step: tuple[float, ...] = setting((), "per command: max change per control step (rate limit)")
    on_limit: Literal["clip", "reject"] = setting("clip", "a value outside [lower, upper]: clip it (and count) "
                                                          "or reject the whole command")


@dataclass(frozen=True)
class Control:
    rate_hz: float = setting(50.0, "control rate (Hz): the watchdog's timer and the step of the rate limit",
                             low=1e-3)
    watchdog_timeout: float = setting(0.5, "no fresh command for this long (s): hold", low=1e-3)
    ramp_in: float = setting(1.0, "after (re)activation the allowed step grows from 0 to the limit over this "
                                  "many seconds, starting from the measured state (0: no ramp)", low=0.0)


@dataclass(frozen=True)
class Gripper:
    """Normalised gripper (0 closed .. 1 open) <-> the gripper joint (rad) and the finger position (m)."""
    joint_open: float = setting(1.4910, "gripper joint at normalised 1 (rad)")
    joint_closed: float = setting(-0.6213, "gripper joint at normalised 0 (rad)")
    finger_open: float = setting(0.0580, "finger position at normalised 1 (m)")
    finger_closed: float = setting(0.01844, "finger position at normalised 0 (m)")

    def to_joint(self, g):
        return self.joint_closed + np.asarray(g, dtype=np.float64) * (self.joint_open - self.joint_closed)

    def from_joint(self, rad):
        return (np.asarray(rad, dtype=np.float64) - self.joint_closed) / (self.joint_open - self.joint_closed)

    def to_finger(self, g):
        return self.finger_closed + np.asarray(g, dtype=np.float64) * (self.finger_open - self.finger_closed)

    def from_finger(self, m):
        return (np.asarray(m, dtype=np.float64) - self.finger_closed) / (self.finger_open - self.finger_closed)


@dataclass(frozen=True)
class Arm:
    """One driver namespace: the commands it serves and the joint states it publishes."""
    name: str = setting("", "the arm's driver namespace, e.g. follower_left ('' = the station's)")
    commands: tuple[str, ...] = setting((), "the profile's command names this arm serves, in the driver's "
                                            "joint order (interbotix: the arm group's joints, gripper last)")
    joints: tuple[str, ...] = setting((), "the driver's joint name of each of `commands` (effector_delta: the "
                                          "state names of the effector target the delta moves)")
    state_topic: str = setting("joint_states", "the driver's sensor_msgs/JointState topic for this arm")
    state_names: tuple[str, ...] = setting((), "the joint names the driver publishes there, in order")
    gripper: str = setting("", "which of `joints` is a normalised gripper ('' = none)")
    gripper_state: str = setting("", "the state name measuring the gripper, in m (e.g. left_finger); '' = the "
                                     "gripper joint itself, in rad")
    group: str = setting("arm", "interbotix: the JointGroupCommand group name")

    def topic(self, leaf: str) -> str:
        return f"{self.name}/{leaf}" if self.name else leaf


@dataclass(frozen=True)
class Camera:
    name: str = setting("", "camera name, e.g. cam_high")
    topic: str = setting("camera/image_raw", "sensor_msgs/Image topic")
    encoding: Literal["rgb8", "bgr8"] = setting("rgb8", "image encoding")
    width: int = setting(640, "image width (px)", low=1)
    height: int = setting(480, "image height (px)", low=1)


@dataclass(frozen=True)
class Output:
    type: OutputType = setting("interbotix", "the driver's command interface")
    topic: str = setting("", "ros2_control_forward / joint_trajectory / effector_delta: the command topic "
                             "(interbotix: per arm <arm>/commands/joint_group and joint_single)")
    frame_id: str = setting("", "effector_delta: the TwistStamped frame")
    workspace_lower: tuple[float, ...] = setting((), "effector_delta: lowest effector target (m) per command; "
                                                     "a delta is clipped so the target stays inside ((): none)")
    workspace_upper: tuple[float, ...] = setting((), "effector_delta: highest effector target (m) per command")


TaskSource = Literal["sim", "list"]
ResetMode = Literal["sim", "operator", "none"]


@dataclass(frozen=True)
class StationSettings:
    """The station manager's settings (optional `station:` section; the node's parameters override them)."""
    policy_rate_hz: float = setting(10.0, "observations per second the manager publishes while an episode runs "
                                          "(the policy's rate)", low=1e-3)
    stale_timeout: float = setting(1.0, "no new camera frame or joint state of an arm for this long (s): the "
                                        "station faults and the episode ends as a fault", low=1e-3)
    max_steps: int = setting(200, "step cap: the episode ends after this many observations after its first "
                                  "(one action each)", low=1)
    tasks: TaskSource = setting("list", "where tasks come from: sim (a simulated LanguageTable: the scene's "
                                        "instruction and goal for the reset seed) or list (`instructions`, round "
                                        "robin: a real robot with an operator)")
    instructions: tuple[str, ...] = setting((), "tasks: list: the instructions, used in turn")
    resets: ResetMode = setting("operator", "how a new episode's scene is set: sim (the driver's sim/reset with "
                                            "the station's next practice seed), operator (wait for the operator's "
                                            "`reset` call: the scene is ready) or none")
    env_id: str = setting("", "Task.env_id of the episodes ('' = the profile's name)")
    sim_block_mode: Literal["BLOCK_4", "BLOCK_8", "N_CHOOSE_K", "BANANA"] = setting(
        "BLOCK_4", "tasks: sim: the simulated driver's block_mode (must match the driver's)")
    sim_families: tuple[str, ...] = setting((), "tasks: sim: the simulated driver's instruction families (() = all; "
                                                "must match the driver's)")


@dataclass(frozen=True)
class Profile:
    name: str = setting("", "the profile's name")
    description: str = setting("", "what robot and driver it describes")
    command: CommandLayout = setting(CommandLayout(), "the policy's command layout and its limits")
    control: Control = setting(Control(), "rates and timeouts")
    gripper: Gripper | None = setting(None, "gripper constants (needed when an arm has a gripper)")
    arms: tuple[Arm, ...] = setting((), "the driver's arms: commands served, joint states published")
    cameras: tuple[Camera, ...] = setting((), "the cameras (topic, encoding, size)")
    output: Output = setting(Output(), "the command output")
    station: StationSettings = setting(StationSettings(), "the station manager: rate, timeouts, tasks, resets")

    # --- derived -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.command.names)

    @property
    def delta(self) -> bool:
        """The command is a displacement per step (hold = 0), not a position."""
        return self.output.type == "effector_delta"

    @property
    def period(self) -> float:
        return 1.0 / self.control.rate_hz

    @property
    def step_limit(self) -> np.ndarray:
        """The largest change per control step: min(max_step, velocity / rate)."""
        return np.minimum(np.asarray(self.command.max_step), np.asarray(self.command.velocity) * self.period)

    def index(self, command_name: str) -> int:
        return self.command.names.index(command_name)

    # --- checks --------------------------------------------------------------------------------

    def check(self, where: str = "profile") -> "Profile":
        c, n = self.command, len(self.command.names)

        def fail(key: str, text: str):
            raise ProfileError(f"{where}.{key}: {text}")

        if not self.name:
            fail("name", "missing")
        if n == 0:
            fail("command.names", "no commands")
        _unique(c.names, f"{where}.command.names")
        for key in ("lower", "upper", "velocity", "max_step"):
            if len(getattr(c, key)) != n:
                fail(f"command.{key}", f"{len(getattr(c, key))} values for {n} commands {list(c.names)}")
        for name, lo, hi in zip(c.names, c.lower, c.upper):
            if not lo < hi:
                fail("command.lower", f"{name}: lower {lo} is not below upper {hi}")
        for key in ("velocity", "max_step"):
            for name, v in zip(c.names, getattr(c, key)):
                if not v > 0:
                    fail(f"command.{key}", f"{name}: {v} must be > 0")
        if self.gripper is not None:
            g = self.gripper
            if g.joint_open == g.joint_closed or g.finger_open == g.finger_closed:
                fail("gripper", "open and closed values must differ")
        if not self.arms:
            fail("arms", "no arms: at least one driver state topic is needed")
        served: dict[str, str] = {}
        arm_names = [a.name for a in self.arms]
        _unique(arm_names, f"{where}.arms (name)")
        for i, arm in enumerate(self.arms):
            at = f"arms[{i}]" + (f" ({arm.name})" if arm.name else "")
            if len(arm.commands) != len(arm.joints):
                fail(at, f"{len(arm.commands)} commands but {len(arm.joints)} joints")
            _unique(arm.joints, f"{where}.{at}.joints")
            _unique(arm.state_names, f"{where}.{at}.state_names")
            if not arm.state_topic:
                fail(f"{at}.state_topic", "missing")
            for cmd in arm.commands:
                if cmd not in c.names:
                    fail(f"{at}.commands", f"{cmd!r} is not a command name (command.names: {list(c.names)})")
                if cmd in served:
                    fail(f"{at}.commands", f"{cmd!r} is already served by arm {served[cmd]!r}")
                served[cmd] = arm.name
            measured = [arm.gripper_state if j == arm.gripper and arm.gripper_state else j for j in arm.joints]
            missing = [m for m in measured if m not in arm.state_names]
            if missing:
                fail(f"{at}.state_names", f"the driver publishes no {missing} (state_names: {list(arm.state_names)})")
            if arm.gripper:
                if arm.gripper not in arm.joints:
                    fail(f"{at}.gripper", f"{arm.gripper!r} is not one of its joints {list(arm.joints)}")
                if self.gripper is None:
                    fail("gripper", f"{at} has a gripper but the profile has no gripper constants")
                gi = self.index(arm.commands[arm.joints.index(arm.gripper)])
                if c.lower[gi] < 0.0 or c.upper[gi] > 1.0:
                    fail("command.lower", f"{c.names[gi]} is a normalised gripper: its limits must lie in [0, 1]")
                if self.output.type == "interbotix" and arm.joints[-1] != arm.gripper:
                    fail(f"{at}.joints", "interbotix: the gripper comes last (it goes out on joint_single)")
            elif arm.gripper_state:
                fail(f"{at}.gripper_state", "given without a gripper")
            if self.output.type == "interbotix" and not arm.name:
                fail(f"{at}.name", "interbotix: every arm needs its driver namespace")
        unserved = [name for name in c.names if name not in served]
        if unserved:
            fail("arms", f"no arm serves the commands {unserved}")
        o = self.output
        if o.type != "interbotix" and not o.topic:
            fail("output.topic", f"{o.type}: the command topic is missing")
        if o.workspace_lower or o.workspace_upper:
            if o.type != "effector_delta":
                fail("output.workspace_lower", "only an effector_delta output has a workspace")
            for key in ("workspace_lower", "workspace_upper"):
                if len(getattr(o, key)) != n:
                    fail(f"output.{key}", f"{len(getattr(o, key))} values for {n} commands")
            for name, lo, hi in zip(c.names, o.workspace_lower, o.workspace_upper):
                if not lo < hi:
                    fail("output.workspace_lower", f"{name}: lower {lo} is not below upper {hi}")
        if self.delta:
            if n > 3:
                fail("command.names", f"effector_delta: at most 3 commands (linear x, y, z), got {n}")
            for name, lo, hi in zip(c.names, c.lower, c.upper):
                if not lo <= 0.0 <= hi:
                    fail("command.lower", f"{name}: a delta's box [{lo}, {hi}] must contain 0 (the hold)")
        st = self.station
        if st.tasks == "sim" and st.resets != "sim":
            fail("station.tasks", "sim tasks come from the reset seed: they need station.resets: sim")
        if any(not text.strip() for text in st.instructions):
            fail("station.instructions", "an empty instruction")
        _unique([cam.name for cam in self.cameras], f"{where}.cameras (name)")
        _unique([cam.topic for cam in self.cameras], f"{where}.cameras (topic)")
        return self

    # --- state and command translation ------------------------------------------------------------

    def measured(self, arm: Arm, names, positions) -> dict[str, float]:
        """One of `arm`'s joint states as {command name: value in command units} (a gripper normalised);
        commands whose joint the message lacks are left out."""
        where = {n: i for i, n in enumerate(names)}
        out = {}
        for cmd, joint in zip(arm.commands, arm.joints):
            source = arm.gripper_state if joint == arm.gripper and arm.gripper_state else joint
            if source not in where or where[source] >= len(positions):
                continue
            value = float(positions[where[source]])
            if joint == arm.gripper:
                value = float(self.gripper.from_finger(value) if arm.gripper_state else self.gripper.from_joint(value))
            out[cmd] = value
        return out

    def observation_names(self) -> tuple[str, ...]:
        """The names of the learning layer's joint state (the station manager's `joint_states`): a position
        robot's command names in action order (a gripper normalised 0..1); an effector_delta robot's driver
        state names of every arm, as published (LanguageTable: effector_x, effector_y, target_x, target_y)."""
        if self.delta:
            return tuple(n for arm in self.arms for n in arm.state_names)
        return self.command.names

    def observation_state(self, states) -> np.ndarray:
        """The learning layer's joint state from each arm's newest driver message, `states[i]` = (names,
        positions) of `arms[i]`, in `observation_names()` order. A KeyError names what a message lacks."""
        if self.delta:
            out = []
            for arm, (names, positions) in zip(self.arms, states):
                where = {n: i for i, n in enumerate(names)}
                missing = [n for n in arm.state_names if n not in where or where[n] >= len(positions)]
                if missing:
                    raise KeyError(f"{arm.state_topic} has no {missing}")
                out += [float(positions[where[n]]) for n in arm.state_names]
            return np.asarray(out, dtype=np.float64)
        values: dict[str, float] = {}
        for arm, (names, positions) in zip(self.arms, states):
            got = self.measured(arm, names, positions)
            missing = [c for c in arm.commands if c not in got]
            if missing:
                raise KeyError(f"{arm.state_topic} has no joints for {missing}")
            values.update(got)
        return np.asarray([values[c] for c in self.command.names], dtype=np.float64)

    def arm_targets(self, target) -> list[tuple[Arm, tuple[str, ...], np.ndarray]]:
        """A checked target (command order) as (arm, driver joint names, values in driver units) per arm:
        the arm's joints in its order, a gripper converted to its joint (rad)."""
        target = np.asarray(target, dtype=np.float64)
        out = []
        for arm in self.arms:
            values = np.array([target[self.index(cmd)] for cmd in arm.commands], dtype=np.float64)
            if arm.gripper:
                gi = arm.joints.index(arm.gripper)
                values[gi] = float(self.gripper.to_joint(values[gi]))
            out.append((arm, arm.joints, values))
        return out

    def driver_order(self, target) -> tuple[tuple[str, ...], np.ndarray]:
        """ros2_control_forward / joint_trajectory: every arm's joints concatenated, in driver units."""
        names, values = [], []
        for _, joints, v in self.arm_targets(target):
            names += joints
            values.append(v)
        return tuple(names), np.concatenate(values)


def _unique(names, where: str) -> None:
    seen, dup = set(), []
    for n in names:
        if n in seen:
            dup.append(n)
        seen.add(n)
    if dup:
        raise ProfileError(f"{where}: duplicate names {sorted(set(dup))}")


def profile_dirs() -> list[pathlib.Path]:
    """Where shipped profiles are: the package's source folder (an editable install), else the installed
    share/sefm_station/profiles."""
    if PROFILE_DIR.is_dir():
        return [PROFILE_DIR]
    try:
        from ament_index_python.packages import get_package_share_directory

        share = pathlib.Path(get_package_share_directory("sefm_station")) / "profiles"
    except (ImportError, LookupError, OSError, ValueError):   # not installed, no AMENT_PREFIX_PATH
        return []
    return [share] if share.is_dir() else []


def shipped() -> list[str]:
    """The names of the profiles shipped with the package."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def from_mapping(data: dict, where: str = "profile") -> Profile:
    """A checked profile from a mapping (a parsed YAML file)."""
    try:
        profile = from_dict(Profile, data, where)
    except ProfileError:
        raise
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None
    except TypeError as exc:   # a section given as a list, a list where a section belongs, ...
        raise ProfileError(f"{where}: {exc}") from None
    for key in ("lower", "upper", "velocity", "max_step"):
        if not all(math.isfinite(v) for v in getattr(profile.command, key)):
            raise ProfileError(f"{where}.command.{key}: values must be finite")
    return profile.check(where)


def load_profile(name_or_path: str | pathlib.Path) -> Profile:
    """A shipped profile by name (`sim_aloha`) or any profile file by path; a clear error otherwise."""
    text = str(name_or_path)
    path = pathlib.Path(text).expanduser()
    if not (text.endswith((".yaml", ".yml")) or "/" in text):
        found = [d / f"{text}.yaml" for d in profile_dirs() if (d / f"{text}.yaml").exists()]
        if found:
            path = found[0]
        else:
            raise ProfileError(f"no shipped robot profile {text!r}; shipped: {', '.join(shipped())} "
                               "(or give a path to a .yaml file)")
    elif not path.exists():
        raise ProfileError(f"robot profile file {path} does not exist")
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        raise ProfileError(str(exc)) from None
    return from_mapping(data, str(path.name if path.parent in profile_dirs() else path))
