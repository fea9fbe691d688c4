"""The learning core knows no simulator: `sefm_core.sft` trains on a `Labels` object, LanguageTable's schema
lives in `sefm_sim.labels`, and without one (`NO_LABELS`, a real robot's bags) every label is unknown."""
import ast
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import torch

from sefm_core.data import Episode, EpisodeDataset
from sefm_core.sft import AUX_LABELS, NO_LABELS, POINTER_LABELS, all_texts, flatten
from sefm_core.tokenizer import ActionTokenizer
from sefm_sim.labels import BOARD_CENTER, BOARD_SCALE, LANGUAGE_TABLE, POINTER_TARGETS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module a source file imports: import statements and import_module / __import__ of a literal."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("import_module", "__import__"):
                found.add(str(node.args[0].value))
    return found


def test_sefm_core_imports_nothing_from_sefm_sim():
    sources = sorted((ROOT / "src" / "sefm_core" / "sefm_core").rglob("*.py"))
    assert len(sources) > 10
    offending = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "sefm_sim")
                 for p in sources}
    assert not {p: m for p, m in offending.items() if m}, offending
    assert "sefm_sim.labels" in imported_modules(pathlib.Path(__file__))   # the scan sees a from-import


def test_the_label_schema_needs_neither_torch_nor_ros():
    code = ("import sys, sefm_sim.labels; bad = [m for m in ('torch', 'rclpy', 'sefm_core.sft') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def lt_episode(seed: int, instruction: str, goal: dict | None, steps: int = 3) -> Episode:
    """A LanguageTable-shaped episode without the simulator: two blocks, their positions and a camera whose
    projection maps world (x, y) to image (x - 0.35, y) / 0.3."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-0.2, 0.2, (steps + 1, 2, 2)).astype(np.float32) + np.array([0.35, 0.0], np.float32)
    projection = [[1 / 0.3, 0, 0, -0.35 / 0.3], [0, 1 / 0.3, 0, 0], [0, 0, 0, 1]]
    metadata = {"blocks": ["red_moon", "blue_cube"], "camera": {"projection": projection, "block_z": 0.0,
                                                              "effector_z": 0.0}}
    if goal is not None:
        metadata["goal"] = goal
    return Episode(rng.integers(0, 255, (steps + 1, 8, 12, 3), dtype=np.uint8),
                   rng.uniform(0.2, 0.5, (steps + 1, 4)).astype(np.float32), rng.uniform(-0.1, 0.1, (steps, 2)),
                   np.zeros(steps), instruction, True, metadata, {"block_xy": xy})


def tiny_dataset(tmp_path) -> EpisodeDataset:
    """Two episodes with one wording but different goals, and one with another wording of the second goal."""
    push = {"family": "block2block", "block": "red_moon", "reference": "blue_cube"}
    reach = {"family": "point2block", "block": "red_moon"}
    data = EpisodeDataset(tmp_path / "d", create=True)
    for seed, (text, goal) in enumerate((("go to the red moon", push), ("go to the red moon", reach),
                                         ("touch the red moon", reach))):
        data.append(lt_episode(seed, text, goal))
    return data


def flattened(data: EpisodeDataset, **kwargs):
    model = SimpleNamespace(tokenizer=ActionTokenizer([-0.1, -0.1], [0.1, 0.1], 64),
                            config=SimpleNamespace(max_steps_to_go=100))   # all flatten reads of the model
    texts = all_texts(data)
    frames = sum(e["steps"] + 1 for e in data.index)
    return flatten(model, data, list(range(len(data))), torch.zeros(frames, 4, 2, 2), texts,
                   torch.randn(len(texts), 8), **kwargs)


def test_no_labels_leaves_every_label_unknown_and_a_goal_is_its_instruction(tmp_path):
    data = tiny_dataset(tmp_path)
    arrays = flattened(data)   # NO_LABELS is the default
    assert arrays.aux.shape == (12, AUX_LABELS) and torch.isnan(arrays.aux).all()
    assert arrays.pointer.shape == (12, POINTER_LABELS, 2) and torch.isnan(arrays.pointer).all()
    assert arrays.scene_blocks is None and arrays.name_wordings is None   # no scene, no referring loss
    # the first two episodes share an instruction, so they share a goal id, although their goals differ
    goal = arrays.goal.view(3, 4)[:, 0].tolist()
    assert goal[0] == goal[1] != goal[2]
    assert flattened(data, labels=NO_LABELS).goal.tolist() == arrays.goal.tolist()
    # the demos still train: action tokens and steps-to-go labels do not need privileged state
    assert (arrays.tokens[:, 0] >= 0).sum() == 9 and (arrays.stg >= 0).all()


def test_language_table_labels_read_the_goal_the_blocks_and_the_camera(tmp_path):
    data = tiny_dataset(tmp_path)
    arrays = flattened(data, labels=LANGUAGE_TABLE)
    first = data[0]
    xy = first.extras["block_xy"]
    # aux: the named block and its target (the reference block of block2block), normalised to the board
    want = np.concatenate([(xy[:, 0] - BOARD_CENTER) / BOARD_SCALE, (xy[:, 1] - BOARD_CENTER) / BOARD_SCALE], -1)
    assert np.allclose(arrays.aux[:4].numpy(), want, atol=1e-5)
    # pointer: block, target, effector through the camera projection (here the same normalisation)
    assert len(POINTER_TARGETS) == POINTER_LABELS
    assert np.allclose(arrays.pointer[:4, 0].numpy(), want[:, :2], atol=1e-5)
    assert np.allclose(arrays.pointer[:4, 2].numpy(), (first.proprio[:, :2] - BOARD_CENTER) / BOARD_SCALE, atol=1e-5)
    assert arrays.scene_blocks.shape == (12, 2, 2) and (arrays.scene_names[:, 0] == 0).all()
    # goal ids follow the structured goal: the same wording with another goal is another goal, and two
    # wordings of one goal are one
    goal = arrays.goal.view(3, 4)[:, 0].tolist()
    assert goal[0] != goal[1] == goal[2]
    # the red moon's wordings; the point2block ones ask to reach the block itself
    texts = arrays.texts
    wordings = {texts[t]: bool(p) for t, p in zip(arrays.name_wordings[0].tolist(), arrays.wording_points[0].tolist())}
    assert wordings == {"go to the red moon": True, "touch the red moon": True}
    assert (arrays.name_wordings[1] == -1).all()   # no goal names the blue cube
