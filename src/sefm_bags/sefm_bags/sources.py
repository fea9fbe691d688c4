"""Several joint-state and command topics per station, joined into one observation and one action (ROS-free).

A robot like ALOHA publishes each arm's joint states on its own topic (`follower_left/joint_states`, ...) and
takes each arm's commands on its own topics. A `Source` names one such topic and the joints taken from it;
a `Layout` puts the values of every source of a station into one vector, either by concatenation (a topic
map's sources, in the order listed) or in a robot profile's order (`sefm_station.profiles`: the learning
layer's joint state and the policy's command order, the gripper normalised).

Each message a source delivers is reduced to `(names, values)`:

| message | stamped | names | values |
|---|---|---|---|
| `sensor_msgs/JointState` | yes (`header.stamp`) | `name` | `position` |
| `std_msgs/Float64MultiArray` | no | the source's `names`, else `0, 1, ...` | `data` |
| `interbotix_xs_msgs/JointGroupCommand` | no | the source's `names`, else the profile arm's group joints | `cmd` |
| `interbotix_xs_msgs/JointSingleCommand` | no | `[name]` | `[cmd]` |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sefm_core.config import setting

JOINT_STATE = "sensor_msgs/msg/JointState"
HEADERLESS = ("std_msgs/msg/Float64MultiArray", "interbotix_xs_msgs/msg/JointGroupCommand",
              "interbotix_xs_msgs/msg/JointSingleCommand")


@dataclass(frozen=True)
class Source:
    topic: str = setting("", "the topic; a relative name is looked up under each station namespace")
    names: tuple[str, ...] = setting((), "JointState: the joints taken from it, in this order; a headerless "
                                         "command: what its values are called; (): every value, in message "
                                         "order")


def reduce(msg, msgtype: str) -> tuple[list[str], np.ndarray]:
    """One source message -> (names, values); a headerless message's names may be empty."""
    if msgtype == JOINT_STATE:
        return list(msg.name), np.asarray(msg.position, np.float64)
    if msgtype.endswith("JointSingleCommand"):
        return [msg.name], np.asarray([msg.cmd], np.float64)
    values = msg.data if msgtype.endswith("Float64MultiArray") else msg.cmd
    return [], np.asarray(values, np.float64)


class LayoutError(ValueError):
    """A message that does not fit the layout (a joint it lacks, a length that changed); the text says which."""


class Layout:
    """Joins one (names, values) per source into the station's vector, and names its entries."""

    def __init__(self, sources: tuple[Source, ...], profile=None, kind: str = "state"):
        self.sources, self.profile, self.kind = sources, profile, kind

    def names(self, first: list[tuple[list[str], np.ndarray]]) -> list[str]:
        if self.profile is not None:
            return list(self.profile.observation_names() if self.kind == "state" else self.profile.command.names)
        if len(self.sources) == 1:   # one topic: its own names (the single-robot bags of the driver contract)
            names = list(self.sources[0].names) or list(first[0][0])
            return names or [str(i) for i in range(len(first[0][1]))]
        out = []
        for source, (names, values) in zip(self.sources, first):
            prefix = source.topic.strip("/").rsplit("/", 1)[0] if "/" in source.topic.strip("/") else source.topic
            picked = list(source.names) or list(names) or [str(i) for i in range(len(values))]
            out += [f"{prefix}/{n}" for n in picked]
        return out

    def join(self, parts: list[tuple[list[str], np.ndarray]]) -> np.ndarray:
        if self.profile is not None:
            return self._profile_join(parts)
        return np.concatenate([pick(source, names, values)
                               for source, (names, values) in zip(self.sources, parts)]).astype(np.float32)

    def _profile_join(self, parts) -> np.ndarray:
        profile = self.profile
        if self.kind == "state":   # one JointState per arm, in the profile's arm order
            try:
                return profile.observation_state(parts).astype(np.float32)
            except KeyError as exc:
                raise LayoutError(str(exc.args[0])) from None
        if len(parts) == 1 and parts[0][0]:   # a JointState in the policy's command names (joint_command)
            names, values = parts[0]
            where = {n: i for i, n in enumerate(names)}
            missing = [n for n in profile.command.names if n not in where]
            if missing:
                raise LayoutError(f"the command lacks {missing}")
            return np.asarray([values[where[n]] for n in profile.command.names], np.float32)
        # Interbotix: per arm a JointGroupCommand (the group's joints, rad) and a JointSingleCommand (gripper, rad)
        values: dict[str, float] = {}
        for arm, arm_parts in zip(profile.arms, _per_arm(self.sources, profile, parts)):
            joints = {}
            for names, v in arm_parts:
                names = names or [j for j in arm.joints if j != arm.gripper]
                if len(names) != len(v):
                    raise LayoutError(f"{arm.name}: a command of {len(v)} values for {len(names)} joints")
                joints.update(zip(names, v))
            for cmd, joint in zip(arm.commands, arm.joints):
                if joint not in joints:
                    raise LayoutError(f"{arm.name}: no command for its joint {joint!r}")
                value = joints[joint]
                values[cmd] = float(profile.gripper.from_joint(value)) if joint == arm.gripper else float(value)
        return np.asarray([values[c] for c in profile.command.names], np.float32)


def _per_arm(sources, profile, parts):
    """The parts of each profile arm (a source belongs to the arm whose namespace its topic starts with)."""
    groups = [[] for _ in profile.arms]
    for source, part in zip(sources, parts):
        topic = source.topic.strip("/")
        for i, arm in enumerate(profile.arms):
            if topic.startswith(arm.name + "/"):
                groups[i].append(part)
                break
    return groups


def pick(source: Source, names: list[str], values: np.ndarray) -> np.ndarray:
    if not source.names:
        return values
    if not names:   # a headerless command: its values in order, as many as it names
        if len(values) != len(source.names):
            raise LayoutError(f"{source.topic}: {len(values)} values, the topic map names {len(source.names)}")
        return values
    where = {n: i for i, n in enumerate(names)}
    missing = [n for n in source.names if n not in where or where[n] >= len(values)]
    if missing:
        raise LayoutError(f"{source.topic} has no {missing}")
    return np.asarray([values[where[n]] for n in source.names], np.float64)


def profile_sources(profile, commands: str) -> tuple[tuple[Source, ...], tuple[Source, ...], str]:
    """A robot profile's joint-state sources (one per arm), command sources and first camera's topic.
    `commands`: 'joint_command' (the policy's or teleoperator's JointState in command names, what a SEFM
    station records) or 'interbotix' (each arm's commands/joint_group and commands/joint_single)."""
    states = tuple(Source(arm.state_topic, tuple(arm.state_names)) for arm in profile.arms)
    if commands == "interbotix":
        cmds = tuple(Source(arm.topic(leaf)) for arm in profile.arms
                     for leaf in ("commands/joint_group", "commands/joint_single"))
    else:
        cmds = (Source("joint_command"),)
    if not profile.cameras:
        raise LayoutError(f"profile {profile.name!r} has no camera")
    return states, cmds, profile.cameras[0].topic
