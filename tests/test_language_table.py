"""LanguageTable / BananaTable in MuJoCo: predicates, determinism, resets, instructions, oracle, bad input."""
import math

import gymnasium as gym
import numpy as np
import pytest

import sefm_sim.envs  # noqa: F401  (registers the gym ids)
from sefm_sim.envs import lt_constants as C
from sefm_sim.envs import lt_tasks as T
from sefm_sim.envs.language_table import LanguageTableEnv
from sefm_sim.envs.lt_oracle import OrientedPushOracle
from sefm_sim.envs.validation import InvalidActionError


def table(effector=(0.3, 0.0), target=None, **blocks):
    return T.TableState(blocks={k: (*v, 0.0) for k, v in blocks.items()}, effector=effector,
                        target=target or effector)


@pytest.fixture(scope="module")
def env():
    e = LanguageTableEnv(block_mode="BLOCK_4", image_size=(64, 36))
    yield e
    e.close()


# --- success predicates on constructed states ---------------------------------------------

def test_block2block_success_is_centre_distance_below_5cm():
    goal = T.Goal("block2block", "", "red_moon", reference="blue_cube")
    assert goal.success(table(red_moon=(0.30, 0.0), blue_cube=(0.349, 0.0)))
    assert not goal.success(table(red_moon=(0.30, 0.0), blue_cube=(0.351, 0.0)))


def test_absolute_location_radius_is_tighter_at_the_centre():
    corner = T.Goal("block2absolutelocation", "", "red_moon", location="top_left",
                    fixed_target=T.ABSOLUTE_LOCATIONS["top_left"])
    assert corner.success(table(red_moon=(0.125 + 0.11, -0.3048)))
    assert not corner.success(table(red_moon=(0.125 + 0.12, -0.3048)))
    centre = T.Goal("block2absolutelocation", "", "red_moon", location="center", fixed_target=(0.35, 0.0))
    assert centre.success(table(red_moon=(0.35 + 0.099, 0.0)))
    assert not centre.success(table(red_moon=(0.35 + 0.105, 0.0)))  # 0.105 < 0.115 but the centre needs 0.10


def test_relative_location_success_within_10cm_of_the_fixed_target():
    goal = T.Goal("block2relativelocation", "", "red_moon", fixed_target=(0.40, 0.10))
    assert goal.success(table(red_moon=(0.40, 0.19)))
    assert not goal.success(table(red_moon=(0.40, 0.21)))


def test_block2block_relative_needs_the_offset_segment_and_an_undragged_reference():
    goal = T.Goal("block2block_relative", "", "red_moon", reference="blue_cube", offset=(0.0, -0.08),
                  reference_start=(0.40, 0.0))
    assert goal.success(table(red_moon=(0.40, -0.08), blue_cube=(0.40, 0.0)))
    assert goal.success(table(red_moon=(0.40, -0.045), blue_cube=(0.40, 0.0)))   # 56% of the offset
    assert not goal.success(table(red_moon=(0.40, -0.14), blue_cube=(0.40, 0.0)))  # beyond 110% + 4 cm
    # The same relative arrangement, but the reference was dragged 6 cm: failure.
    assert not goal.success(table(red_moon=(0.46, -0.08), blue_cube=(0.46, 0.0)))


def test_separate_succeeds_7_5_to_12_5_cm_from_the_neighbours_centroid():
    goal = T.Goal("separate", "", "red_moon", neighbours=("blue_cube", "green_star"))
    neighbours = dict(blue_cube=(0.40, -0.02), green_star=(0.40, 0.02))  # centroid (0.40, 0)
    assert goal.success(table(red_moon=(0.50, 0.0), **neighbours))
    assert goal.success(table(red_moon=(0.48, 0.0), **neighbours))
    assert not goal.success(table(red_moon=(0.46, 0.0), **neighbours))
    assert not goal.success(table(red_moon=(0.53, 0.0), **neighbours))


def test_point2block_uses_the_effector_target_not_the_effector():
    goal = T.Goal("point2block", "", "red_moon")
    assert goal.success(table(effector=(0.1, 0.1), target=(0.34, 0.0), red_moon=(0.30, 0.0)))
    assert not goal.success(table(effector=(0.30, 0.0), target=(0.36, 0.0), red_moon=(0.30, 0.0)))


# --- instructions -------------------------------------------------------------------------

def test_block_names_use_colour_or_shape_alone_only_when_unique():
    rng = np.random.default_rng(0)
    names4 = {T.block_name(rng, "red_moon", C.BLOCK_4) for _ in range(200)}
    assert names4 == {"red block", "moon", "red moon"}
    names8 = {T.block_name(rng, "red_moon", C.BLOCK_8) for _ in range(200)}
    assert names8 == {"red moon"}  # BLOCK_8 repeats every colour and shape


@pytest.mark.parametrize("family,words", [
    ("block2block", T.PUSH_VERBS),
    ("block2absolutelocation", T.PUSH_VERBS),
    ("block2relativelocation", ("move the", "push the", "slide the")),
    ("block2block_relative", T.PUSH_VERBS),
    ("separate", ("pull the", "move the", "separate the")),
    ("point2block", tuple(p.split(" the")[0] for p in T.POINT_PHRASES)),
])
def test_every_family_generates_its_templates(env, family, words):
    for seed in range(4):
        obs, info = env.reset(seed=seed, options={"family": family})
        text = obs["instruction"]
        assert info["family"] == family and text == env.goal.instruction
        assert any(w in text for w in words), text
        assert env.observation_space["instruction"].contains(text), text
        assert not info["success"]  # never already solved at reset


# --- resets -------------------------------------------------------------------------------

def test_reset_sampling_follows_the_rejection_rules():
    e = LanguageTableEnv(block_mode="N_CHOOSE_K", render_images=False)
    for seed in range(15):
        e.reset(seed=seed)
        poses, effector = e._sample_poses(e.np_random)
        xs = [xy for _, xy, _ in poses]
        for i, a in enumerate(xs):
            assert C.SAMPLING_X[0] <= a[0] <= C.SAMPLING_X[1] and C.SAMPLING_Y[0] <= a[1] <= C.SAMPLING_Y[1]
            assert np.linalg.norm(a - effector) >= C.MIN_PUSHER_GAP
            for b in xs[i + 1:]:
                assert np.linalg.norm(a - b) >= C.MIN_BLOCK_GAP
        state = e.state()
        assert 4 <= len(state.blocks) <= 10
        for x, y, _ in state.blocks.values():  # settled on the board, upright
            assert 0.1 < x < 0.65 and abs(y) < 0.35
        assert float(np.abs(e.data.qvel).max()) < C.AT_REST_SPEED


def test_n_choose_k_split_is_fixed_disjoint_and_90_10():
    for k in (4, 7):
        split = C.n_choose_k_split(k)
        total = math.comb(16, k)
        assert len(split.train) + len(split.test) == total
        assert abs(len(split.test) - round(0.1 * total)) <= 1
        assert not set(split.train) & set(split.test)
    e = LanguageTableEnv(block_mode="N_CHOOSE_K", render_images=False, n_choose_k_split="test")
    for seed in range(5):
        e.reset(seed=seed)
        assert tuple(sorted(e.blocks)) in {tuple(sorted(c)) for c in C.n_choose_k_split(len(e.blocks)).test}


# --- determinism --------------------------------------------------------------------------

def test_same_seed_and_actions_give_identical_observations():
    def rollout():
        e = LanguageTableEnv(block_mode="BLOCK_8", image_size=(64, 36))
        obs, _ = e.reset(seed=123)
        frames, rng = [obs["rgb"]], np.random.default_rng(7)
        for _ in range(15):
            obs, *_ = e.step(rng.uniform(-0.05, 0.05, 2))
            frames.append(obs["rgb"])
        out = (obs["instruction"], e.state(), np.stack(frames), e.data.qpos.copy())
        e.close()
        return out

    a, b = rollout(), rollout()
    assert a[0] == b[0] and a[1] == b[1]
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
    assert a[2].std() > 0  # frames are real renders, not blank


def test_gym_ids_are_registered():
    for env_id in ("sefm/LanguageTable-BLOCK_4-v0", "sefm/LanguageTable-BLOCK_8-v0",
                   "sefm/LanguageTable-N_CHOOSE_K-v0", "sefm/BananaTable-v0"):
        e = gym.make(env_id, render_images=False)
        obs, info = e.reset(seed=0)
        assert e.observation_space.contains(obs)
        e.close()


def test_banana_table_has_a_banana_named_as_such():
    e = LanguageTableEnv(block_mode="BANANA", render_images=False)
    texts = []
    for seed in range(30):
        obs, _ = e.reset(seed=seed)
        assert "yellow_banana" in e.blocks
        texts.append(obs["instruction"])
    assert any("banana" in t for t in texts)
    assert not any("banana" in b for b in C.BLOCK_4 + C.BLOCK_8)  # never in the standard modes


# --- oracle -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", T.FAMILIES)
def test_oracle_solves_seeded_tasks(family):
    e = LanguageTableEnv(block_mode="BLOCK_4", render_images=False)
    solved = 0
    for seed in range(3):
        e.reset(seed=seed, options={"family": family})
        oracle = OrientedPushOracle()
        for _ in range(200):
            _, reward, terminated, truncated, info = e.step(oracle.act(e.state(), e.goal))
            if terminated or truncated:
                break
        solved += int(terminated and info["success"] and reward == e.config.success_reward)
    assert solved >= 2, f"{family}: oracle solved {solved}/3"


def test_oracle_noise_changes_actions_but_stays_in_bounds(env):
    env.reset(seed=5, options={"family": "block2block"})
    quiet, noisy = OrientedPushOracle(), OrientedPushOracle(noise_std=0.02, rng=np.random.default_rng(1))
    a, b = quiet.act(env.state(), env.goal), noisy.act(env.state(), env.goal)
    assert not np.allclose(a, b)
    assert np.all(np.abs(b) <= C.MAX_ACTION)


def test_a_slower_oracle_still_solves_and_takes_more_steps():
    e = LanguageTableEnv(block_mode="BLOCK_4", render_images=False)
    steps = {}
    for scale in (1.0, 0.3):
        e.reset(seed=2, options={"family": "point2block"})
        oracle = OrientedPushOracle(speed_scale=scale)
        for t in range(1, 201):
            _, _, terminated, truncated, info = e.step(oracle.act(e.state(), e.goal))
            if terminated or truncated:
                break
        assert info["success"], scale
        steps[scale] = t
    assert steps[0.3] >= 2 * steps[1.0], steps
    for bad in (0.0, -1.0, 10.0):  # 10x would exceed the 0.1 m action bound
        with pytest.raises(ValueError):
            OrientedPushOracle(speed_scale=bad)


# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("action", [[np.nan, 0.0], [0.0, np.inf], [0.1, 0.1, 0.1], [[0.1, 0.1]], "left"])
def test_malformed_actions_raise(env, action):
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(action)


def test_out_of_range_actions_are_clipped_to_limits_and_workspace(env):
    env.reset(seed=0)
    before = np.array(env.state().target)
    env.step([5.0, -5.0])
    after = np.array(env.state().target)
    expected = [np.clip(before[0] + 0.1, *C.WORKSPACE_X), np.clip(before[1] - 0.1, *C.WORKSPACE_Y)]
    assert np.allclose(after, expected)
    for _ in range(10):
        env.step([0.1, 0.1])
    x, y = env.state().target
    assert x == pytest.approx(C.WORKSPACE_X[1]) and y == pytest.approx(C.WORKSPACE_Y[1])


def test_unknown_names_raise_and_list_the_valid_ones():
    with pytest.raises(ValueError, match="BLOCK_8"):
        LanguageTableEnv(block_mode="BLOCK_5")
    with pytest.raises(ValueError, match="block2block"):
        LanguageTableEnv(families=("stack",))
    with pytest.raises(ValueError, match="image_size"):
        LanguageTableEnv(colour="red")
    e = LanguageTableEnv(render_images=False)
    with pytest.raises(ValueError, match="separate"):
        e.reset(seed=0, options={"family": "juggle"})
    with pytest.raises(ValueError, match="valid: family, families"):
        e.reset(seed=0, options={"difficulty": 3})
    with pytest.raises(RuntimeError, match="render_images=False"):
        e.render()


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        LanguageTableEnv(render_images=False).step([0.0, 0.0])
