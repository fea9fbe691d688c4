"""MJCF for the LanguageTable scene: board, mocap pusher, blocks with their real shapes.

Non-convex footprints (moon, star, banana) are unions of convex prisms, because
MuJoCo collides meshes through their convex hulls.
"""
from __future__ import annotations

import math

import numpy as np

from sefm_sim.envs import lt_constants as C

Polygon = list[tuple[float, float]]


def _regular(n: int, radius: float, phase: float) -> Polygon:
    return [(radius * math.cos(phase + 2 * math.pi * i / n), radius * math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)]


def _fit(pieces: list[Polygon], size: tuple[float, float]) -> list[Polygon]:
    """Centre the union of pieces on its bounding box and scale it to `size` (x length, y width)."""
    pts = np.array([p for piece in pieces for p in piece])
    lo, hi = pts.min(0), pts.max(0)
    scale = np.array(size) / (hi - lo)
    mid = (lo + hi) / 2
    return [[tuple((np.array(p) - mid) * scale) for p in piece] for piece in pieces]


def _crescent(offset: float, strips: int) -> list[Polygon]:
    """Convex strips of a crescent: the unit disc minus a unit disc shifted up by `offset`.

    Thickest (by `offset`) at the bottom, thinning to the horns. Each strip is a
    trapezoid between two vertical lines, so it is convex.
    """
    def lower(x):
        return -math.sqrt(max(1.0 - x * x, 0.0))

    def upper(x):
        return min(math.sqrt(max(1.0 - x * x, 0.0)), offset - math.sqrt(max(1.0 - x * x, 0.0)))

    xs = np.linspace(-1.0, 1.0, strips + 1)
    return [[(x0, lower(x0)), (x1, lower(x1)), (x1, upper(x1)), (x0, upper(x0))] for x0, x1 in zip(xs[:-1], xs[1:])]


def footprint_pieces(shape: str) -> list[Polygon]:
    """Convex polygons whose union is the shape's footprint, in the block frame."""
    if shape == "cube":
        return _fit([_regular(4, 1.0, math.pi / 4)], C.FOOTPRINTS["cube"])
    if shape == "pentagon":
        return _fit([_regular(5, 1.0, math.pi / 2)], C.FOOTPRINTS["pentagon"])
    if shape == "star":
        tips = _regular(5, 1.0, math.pi / 2)
        inner = _regular(5, 0.45, math.pi / 2 + math.pi / 5)
        arms = [[(0.0, 0.0), inner[i - 1], tips[i], inner[i]] for i in range(5)]
        return _fit(arms, C.FOOTPRINTS["star"])
    if shape == "moon":
        # A crescent long along x, opening towards +y; its box centre lies in the material.
        return _fit(_crescent(0.8, 6), C.FOOTPRINTS["moon"])
    if shape == "banana":
        # Long, thin and curved: its box centre lies outside the material, as a banana's does.
        return _fit(_crescent(0.35, 8), C.BANANA_FOOTPRINT)
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(C.SHAPES + ('banana',))}")


def _prism_vertices(poly: Polygon, height: float) -> str:
    verts = [(x, y, z) for z in (-height / 2, height / 2) for x, y in poly]
    return " ".join(f"{v:.5f}" for p in verts for v in p)


def block_body_xml(block: str, index: int) -> tuple[str, str]:
    """(asset xml, body xml) of one block: a free body made of convex prisms."""
    color, shape = block.split("_", 1)
    pieces = footprint_pieces(shape)
    rgba = " ".join(str(c) for c in (C.BANANA_RGBA if shape == "banana" else C.RGBA[color]))
    assets, geoms = [], []
    mass = C.BLOCK_MASS / len(pieces)
    for j, poly in enumerate(pieces):
        name = f"{block}_m{j}"
        assets.append(f'<mesh name="{name}" vertex="{_prism_vertices(poly, C.BLOCK_HEIGHT)}"/>')
        geoms.append(f'<geom name="{block}_g{j}" type="mesh" mesh="{name}" mass="{mass:.6f}" rgba="{rgba}" '
                     f'class="block"/>')
    # The shape pieces touch the pusher and other blocks; one invisible, massless
    # box stands them on the floor. Floor contacts of every piece would cost
    # several times more solver time and change nothing a camera or a pusher sees.
    length, width = C.FOOTPRINTS.get(shape, C.BANANA_FOOTPRINT)
    base = (f'<geom name="{block}_base" type="box" size="{0.45 * length:.4f} {0.45 * width:.4f} 0.002" '
            f'pos="0 0 {-C.BLOCK_HEIGHT / 2 + 0.002:.4f}" mass="0" class="block_base"/>')
    # Bodies start parked off the board; reset places them.
    body = (f'<body name="{block}" pos="{-1.0 - 0.2 * index} 0 {C.BLOCK_HEIGHT / 2}">'
            f'<freejoint name="{block}_joint"/>{"".join(geoms)}{base}</body>')
    return "".join(assets), body


def scene_xml(blocks: tuple[str, ...], width: int, height: int, timestep: float) -> str:
    assets, bodies = zip(*(block_body_xml(b, i) for i, b in enumerate(blocks))) if blocks else ((), ())
    bx, by = C.BOARD_CENTER
    hx, hy = C.BOARD_SIZE[0] / 2, C.BOARD_SIZE[1] / 2
    pusher_z = C.PUSHER_CLEARANCE + C.PUSHER_HALF_LENGTH
    return f"""<mujoco model="language_table">
  <!-- Collision bits: floor <-> block bases (1); pusher <-> block pieces <-> block pieces (2). -->
  <option timestep="{timestep}" integrator="implicitfast"/>
  <visual>
    <global offwidth="{width}" offheight="{height}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
  </visual>
  <default>
    <default class="block">
      <geom friction="{C.CONTACT_FRICTION} 0.005 0.0001" condim="3" contype="2" conaffinity="2"/>
    </default>
    <default class="block_base">
      <geom friction="{C.CONTACT_FRICTION} 0.005 0.0001" condim="3" contype="1" conaffinity="0" group="3" rgba="0 0 0 0"/>
    </default>
  </default>
  <asset>
    {''.join(assets)}
  </asset>
  <worldbody>
    <!-- The floor collides; the board is only drawn (blocks can leave it, as on the real table). -->
    <geom name="floor" type="plane" size="1 1 0.01" pos="{bx} 0 0" rgba="0.55 0.52 0.48 1"
          friction="{C.CONTACT_FRICTION} 0.005 0.0001" contype="1" conaffinity="1"/>
    <geom name="board" type="box" pos="{bx} {by} -0.0048" size="{hx} {hy} 0.005" rgba="0.2 0.2 0.2 1"
          contype="0" conaffinity="0"/>
    <body name="pusher" mocap="true" pos="{C.WORKSPACE_CENTER[0]} {C.WORKSPACE_CENTER[1]} {pusher_z}">
      <geom name="pusher" type="cylinder" size="{C.PUSHER_RADIUS} {C.PUSHER_HALF_LENGTH}"
            rgba="0.55 0.55 0.58 1" contype="2" conaffinity="2" friction="{C.CONTACT_FRICTION} 0.005 0.0001" condim="3"/>
    </body>
    <camera name="overhead" pos="0.75 0 0.5" xyaxes="0 1 0 -0.809 0 0.588" fovy="38.6"/>
    {''.join(bodies)}
  </worldbody>
</mujoco>"""
