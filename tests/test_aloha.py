"""ALOHA in MuJoCo: staged rewards, determinism, scripted demo replay, bad input."""
import gymnasium as gym
import numpy as np
import pytest

import sefm_sim.envs  # noqa: F401  (registers the gym ids)
from sefm_sim.envs import aloha_scripted
from sefm_sim.envs.aloha import (GRIPPER_CLOSED, GRIPPER_OPEN, AlohaEnv, AlohaSim, assets_dir,
                                        finger_to_gripper, gripper_to_finger, staged_reward)
from sefm_sim.envs.validation import InvalidActionError

G = {"table": 0, "left_finger": 1, "right_finger": 2, "box": 3, "peg": 3, "pin": 4}
SOCKETS = {5, 6}


def pairs(*touching):
    return {(min(a, b), max(a, b)) for a, b in touching}


# --- staged rewards on constructed contact states ------------------------------------------

@pytest.mark.parametrize("touching,stage", [
    ((), 0),
    (((3, 0),), 0),                                 # cube on the table only
    (((3, 2), (3, 0)), 1),                          # right finger touches, cube on the table
    (((3, 2),), 2),                                 # right finger holds it in the air
    (((3, 1), (3, 0)), 3),                          # left finger touches, cube on the table
    (((3, 1), (3, 2)), 4),                          # left holds it in the air: transferred
])
def test_transfer_cube_stages(touching, stage):
    assert staged_reward("transfer_cube", pairs(*touching), G) == stage


@pytest.mark.parametrize("touching,stage", [
    (((3, 2),), 0),                                 # only the peg is grasped
    (((3, 2), (5, 1), (3, 0)), 1),                  # both grasped, peg still on the table
    (((3, 2), (6, 1)), 2),                          # both grasped and lifted
    (((3, 2), (6, 1), (3, 5)), 3),                  # peg touches the socket in the air
    (((3, 5), (3, 0)), 0),                          # peg touches the socket but lies on the table
    (((3, 4),), 4),                                 # peg touches the pin: inserted
])
def test_insertion_stages(touching, stage):
    assert staged_reward("insertion", pairs(*touching), G, SOCKETS) == stage


def test_reward_reads_real_contacts_in_the_model():
    sim = AlohaSim("transfer_cube", mocap_control=False, render_images=False)
    sim.reset(np.random.default_rng(0))
    for _ in range(5):
        sim.step()
    box, table = sim.model.geom("red_box").id, sim.model.geom("table").id
    assert (min(box, table), max(box, table)) in sim.contacts()  # the cube rests on the table
    assert sim.reward() == 0


def test_gripper_mapping_round_trips_between_closed_and_open():
    assert gripper_to_finger(0.0) == pytest.approx(GRIPPER_CLOSED)
    assert gripper_to_finger(1.0) == pytest.approx(GRIPPER_OPEN)
    assert finger_to_gripper(gripper_to_finger(0.37)) == pytest.approx(0.37)


def test_model_comes_from_the_installed_gym_aloha_wheel():
    path = assets_dir()
    assert "site-packages" in str(path) and (path / "bimanual_viperx_insertion.xml").is_file()


# --- env conventions ------------------------------------------------------------------------

def test_observation_layout_and_seeded_spawns():
    env = AlohaEnv(task="insertion", image_size=(64, 48))
    obs, info = env.reset(seed=3)
    assert obs["qpos"].shape == (14,) and obs["qvel"].shape == (14,) and obs["rgb"].shape == (48, 64, 3)
    assert env.observation_space.contains(obs)
    peg, socket = info["objects"]["peg"], info["objects"]["socket"]
    assert 0.1 <= peg[0] <= 0.2 and -0.2 <= socket[0] <= -0.1 and 0.4 <= peg[1] <= 0.6
    _, info2 = env.reset(seed=3)
    assert np.array_equal(info2["objects"]["peg"], peg)
    _, info3 = env.reset(seed=4)
    assert not np.array_equal(info3["objects"]["peg"], peg)
    env.close()


def test_same_seed_and_actions_give_identical_observations():
    def rollout():
        env = AlohaEnv(task="transfer_cube", image_size=(64, 48))
        obs, _ = env.reset(seed=11)
        rng = np.random.default_rng(2)
        frames = [obs["rgb"]]
        for _ in range(10):
            action = env.action_space.low + (env.action_space.high - env.action_space.low) * rng.uniform(0.45, 0.55, 14)
            obs, *_ = env.step(action)
            frames.append(obs["rgb"])
        out = np.stack(frames), obs["qpos"], env.sim.data.qpos.copy()
        env.close()
        return out

    a, b = rollout(), rollout()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].std() > 0


def test_gym_ids_are_registered():
    for env_id in ("sefm/Aloha-TransferCube-v0", "sefm/Aloha-Insertion-v0"):
        env = gym.make(env_id, render_images=False)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        env.close()


# --- scripted demonstrations ----------------------------------------------------------------

@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_replayed_scripted_demo_reaches_success(task):
    demo = aloha_scripted.record(task, seed=0)
    assert demo.actions.shape == (400, 14)
    assert np.all(np.isfinite(demo.actions))
    best, _ = aloha_scripted.replay(demo)
    assert best == 4
    # The same demo through the gym interface, ending on success as the RL env does.
    env = AlohaEnv(task=task, render_images=False)
    env.reset(seed=0)
    for action in demo.actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 4.0 and env.steps < 400
    env.close()


def test_replay_from_another_seed_does_not_reproduce_the_demo():
    demo = aloha_scripted.record("transfer_cube", seed=0)
    shifted = aloha_scripted.Demo("transfer_cube", 1, demo.actions, demo.ee_max_stage, demo.objects)
    best, _ = aloha_scripted.replay(shifted)
    assert best < 4  # the cube is elsewhere: a replay is only as good as its spawn


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("action", [np.full(14, np.nan), np.zeros(13), np.zeros((2, 14)), [np.inf] + [0.0] * 13])
def test_malformed_actions_raise(action):
    env = AlohaEnv(task="transfer_cube", render_images=False)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(action)


def test_out_of_range_actions_are_clipped_to_joint_and_gripper_limits():
    env = AlohaEnv(task="transfer_cube", render_images=False)
    env.reset(seed=0)
    env.step(np.full(14, 100.0))
    ctrl = env.sim.data.ctrl
    high = env.sim.model.actuator_ctrlrange[:, 1]
    assert np.all(ctrl[[0, 1, 2, 3, 4, 5]] <= high[[0, 1, 2, 3, 4, 5]] + 1e-9)
    assert ctrl[6] == pytest.approx(GRIPPER_OPEN)  # gripper 100 -> clipped to 1 -> fully open


def test_unknown_names_raise_and_list_the_valid_ones():
    with pytest.raises(ValueError, match="insertion"):
        AlohaEnv(task="stack_cups")
    with pytest.raises(ValueError, match="max_steps"):
        AlohaEnv(episode_length=3)
    env = AlohaEnv(task="insertion", render_images=False)
    with pytest.raises(ValueError, match="takes none"):
        env.reset(seed=0, options={"family": "x"})
    with pytest.raises(RuntimeError, match="render_images=False"):
        env.render()
    with pytest.raises(RuntimeError, match="reset"):
        AlohaEnv(render_images=False).step(np.zeros(14))
