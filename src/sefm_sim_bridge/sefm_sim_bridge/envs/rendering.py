"""One offscreen camera of a MuJoCo model, or none: a clear error instead of a blank frame."""
from __future__ import annotations

import mujoco
import numpy as np


class Camera:
    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, name: str, width: int, height: int,
                 enabled: bool = True):
        self.data = data
        self.id = model.camera(name).id
        self.enabled = enabled
        self._renderer = mujoco.Renderer(model, height, width) if enabled else None

    def render(self) -> np.ndarray:
        """The current frame, (height, width, 3) uint8 RGB, a copy the caller may keep."""
        if self._renderer is None:
            raise RuntimeError("this env was made with render_images=False")
        self._renderer.update_scene(self.data, self.id)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
