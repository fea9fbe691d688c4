"""Robot profiles (sefm_station.profiles): the shipped ones load and mean what the drivers expect; a bad
profile is one clear error naming its key."""
import math
import pathlib
import re

import numpy as np
import pytest
import yaml

from sefm_station.profiles import PROFILE_DIR, ProfileError, from_mapping, load_profile, shipped

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


def raw(name: str) -> dict:
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


def test_the_four_profiles_ship_and_install():
    assert set(shipped()) >= {"sim_aloha", "aloha_ros2_interbotix", "sim_language_table", "ros2_control_arm"}
    setup = (ROOT / "src/sefm_station/setup.py").read_text()
    assert "'share/' + package_name + '/profiles', glob('profiles/*.yaml')" in setup


@pytest.mark.parametrize("name", ["sim_aloha", "aloha_ros2_interbotix", "sim_language_table", "ros2_control_arm"])
def test_shipped_profiles_load_by_name_and_by_path(name):
    by_name = load_profile(name)
    assert by_name.name == name
    assert load_profile(PROFILE_DIR / f"{name}.yaml") == by_name
    assert by_name.size == len(by_name.command.lower) == len(by_name.command.upper)
    assert np.all(by_name.step_limit > 0)


def test_aloha_profiles_follow_the_interbotix_contract():
    act, ros2 = load_profile("sim_aloha"), load_profile("aloha_ros2_interbotix")
    for p in (act, ros2):
        assert p.output.type == "interbotix" and p.size == 14 and p.control.rate_hz == 50.0
        assert [a.name for a in p.arms] == ["follower_left", "follower_right"]
        for arm, side in zip(p.arms, ("left", "right")):
            assert arm.joints == ARM + ("gripper",) and arm.gripper == "gripper" and arm.gripper_state == "left_finger"
            assert arm.state_topic == f"{arm.name}/joint_states"
            assert arm.state_names == ARM + ("gripper", "left_finger", "right_finger")
            assert arm.commands == tuple(f"{side}_{j}" for j in ARM + ("gripper",))
        # vx300s limits: shoulder -106..72 deg, wrist_angle -107..128 deg, the gripper normalised
        i = p.index("left_shoulder")
        assert math.isclose(p.command.lower[i], math.radians(-106), abs_tol=1e-4)
        assert math.isclose(p.command.upper[i], math.radians(72), abs_tol=1e-4)
        j = p.index("right_wrist_angle")
        assert math.isclose(p.command.upper[j], math.radians(128), abs_tol=1e-4)
        assert (p.command.lower[p.index("left_gripper")], p.command.upper[p.index("left_gripper")]) == (0.0, 1.0)
    # ACT's constants and Interbotix ROS 2 ALOHA's measured ones differ
    assert (act.gripper.finger_open, act.gripper.finger_closed) == (0.058, 0.01844)
    assert (act.gripper.joint_open, act.gripper.joint_closed) == (1.491, -0.6213)
    assert (ros2.gripper.finger_open, ros2.gripper.finger_closed) == (0.0579, 0.044)
    assert (ros2.gripper.joint_open, ros2.gripper.joint_closed) == (1.6214, 0.6197)
    assert {c.name for c in ros2.cameras} == {"cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"}
    assert all(c.topic.endswith("/camera/color/image_rect_raw") and c.encoding == "rgb8" for c in ros2.cameras)


def test_language_table_and_ros2_control_profiles():
    lt = load_profile("sim_language_table")
    assert lt.output.type == "effector_delta" and lt.delta and lt.command.names == ("delta_x", "delta_y")
    assert lt.control.rate_hz == 10.0 and lt.command.upper == (0.1, 0.1)
    assert lt.output.workspace_lower == (0.15, -0.3048) and lt.output.workspace_upper == (0.6, 0.3048)
    arm = load_profile("ros2_control_arm")
    assert arm.output.type == "ros2_control_forward" and arm.output.topic == "forward_position_controller/commands"
    assert arm.command.on_limit == "reject" and arm.size == 6


def test_gripper_normalisation_and_driver_order():
    p = load_profile("sim_aloha")
    g = p.gripper
    assert math.isclose(float(g.to_joint(1.0)), 1.491) and math.isclose(float(g.to_joint(0.0)), -0.6213)
    assert math.isclose(float(g.from_finger(0.058)), 1.0) and math.isclose(float(g.from_finger(0.01844)), 0.0)
    assert math.isclose(float(g.from_joint(g.to_joint(0.37))), 0.37)
    # a driver's joint state -> command units: the gripper read from left_finger (m), normalised
    state = dict(zip(p.arms[1].state_names, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 9.9, 0.03844, -0.03844]))
    measured = p.measured(p.arms[1], list(state), list(state.values()))
    assert measured == pytest.approx({"right_waist": 0.1, "right_shoulder": 0.2, "right_elbow": 0.3,
                                      "right_forearm_roll": 0.4, "right_wrist_angle": 0.5,
                                      "right_wrist_rotate": 0.6, "right_gripper": 0.02 / 0.03956})
    # a checked target -> per arm, driver order, gripper in rad
    target = np.arange(14) / 100.0
    (left, lj, lv), (right, rj, rv) = p.arm_targets(target)
    assert left.name == "follower_left" and lj == ARM + ("gripper",)
    assert lv[:6] == pytest.approx(target[:6]) and lv[6] == pytest.approx(-0.6213 + 0.06 * 2.1123)
    assert rv[:6] == pytest.approx(target[7:13]) and rv[6] == pytest.approx(-0.6213 + 0.13 * 2.1123)
    names, values = p.driver_order(target)
    assert len(names) == 14 and values[7:13] == pytest.approx(target[7:13])


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(colour="red"), r"profile: unknown key\(s\) \['colour'\]"),
    (lambda d: d["control"].update(rate=50), r"profile.control: unknown key\(s\) \['rate'\]"),
    (lambda d: d["arms"][0].update(topic="x"), r"profile.arms: unknown key\(s\) \['topic'\]"),
    (lambda d: d["control"].update(rate_hz="fast"), r"profile.control.rate_hz: expected float"),
    (lambda d: d["control"].update(rate_hz=0.0), r"profile.control.rate_hz: 0.0 is out of range"),
    (lambda d: d["output"].update(type="can_bus"), r"profile.output.type: 'can_bus' is not one of interbotix"),
    (lambda d: d["command"].update(on_limit="ignore"), r"profile.command.on_limit: 'ignore' is not one of clip"),
    (lambda d: d["command"]["lower"].__setitem__(1, 2.0), r"profile.command.lower: left_shoulder: lower 2.0 is "
                                                          r"not below upper 1.25664"),
    (lambda d: d["command"]["upper"].pop(), r"profile.command.upper: 13 values for 14 commands"),
    (lambda d: d["command"]["max_step"].append(0.1), r"profile.command.max_step: 15 values for 14 commands"),
    (lambda d: d["command"]["velocity"].__setitem__(0, 0.0), r"profile.command.velocity: left_waist: 0.0 must be > 0"),
    (lambda d: d["command"]["names"].__setitem__(1, "left_waist"), r"profile.command.names: duplicate names "
                                                                   r"\['left_waist'\]"),
    (lambda d: d["arms"][1]["commands"].pop(), r"arms\[1\] \(follower_right\): 6 commands but 7 joints"),
    (lambda d: d["arms"][1]["commands"].__setitem__(0, "left_waist"), r"'left_waist' is already served by arm "
                                                                     r"'follower_left'"),
    (lambda d: d["arms"][0]["state_names"].remove("left_finger"), r"the driver publishes no \['left_finger'\]"),
    (lambda d: d["command"]["upper"].__setitem__(6, 1.5), r"left_gripper is a normalised gripper"),
    (lambda d: d.pop("gripper"), r"profile.gripper: arms\[0\] \(follower_left\) has a gripper but the profile has no "
                                 r"gripper constants"),
    (lambda d: d["output"].update(type="ros2_control_forward"), r"profile.output.topic: ros2_control_forward: the "
                                                                r"command topic is missing"),
    (lambda d: d["arms"][0].update(name=""), r"interbotix: every arm needs its driver namespace"),
    (lambda d: d["cameras"][0].update(encoding="yuv422"), r"profile.cameras.encoding: 'yuv422' is not one of rgb8"),
])
def test_a_bad_profile_is_one_clear_error(edit, message):
    data = raw("sim_aloha")
    edit(data)
    with pytest.raises(ProfileError, match=message):
        from_mapping(data)


def test_a_bad_file_or_name_is_a_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="no shipped robot profile 'sim_alhoa'; shipped: aloha_ros2_interbotix"):
        load_profile("sim_alhoa")
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    data = raw("sim_language_table")
    data["output"]["workspace_upper"] = [0.1, 0.3048]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=re.escape(f"{bad}.output.workspace_lower: delta_x: lower 0.15 is not "
                                                     "below upper 0.1")):
        load_profile(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="the top level must be a mapping"):
        load_profile(bad)
