"""One offscreen camera of a MuJoCo model, or none: a clear error instead of a blank frame."""
from __future__ import annotations

import weakref

import mujoco
import numpy as np


class Camera:
    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, name: str, width: int, height: int,
                 enabled: bool = True):
        self.model, self.data = model, data
        self.id = model.camera(name).id
        self.size = (width, height)
        self.enabled = enabled
        self._renderer = mujoco.Renderer(model, height, width) if enabled else None
        # Frees the renderer once: on close(), when this Camera is collected, or at exit. A finalizer
        # rather than __del__: it holds the renderer, so the GL context is still alive when it runs,
        # even when the env dies in a reference cycle.
        self._free = weakref.finalize(self, _free_renderer, self._renderer) if enabled else None

    def render(self) -> np.ndarray:
        """The current frame, (height, width, 3) uint8 RGB, a copy the caller may keep."""
        if self._renderer is None:
            raise RuntimeError("this env was made with render_images=False")
        self._renderer.update_scene(self.data, self.id)
        return self._renderer.render().copy()

    def projection(self) -> np.ndarray:
        """(3, 4) pinhole projection of world points into this camera's image, in coordinates normalised
        to [-1, 1] (x to the right, y down): [u*w, v*w, w] = P @ [x, y, z, 1]. Needs a forward pass done."""
        width, height = self.size
        rotation = self.data.cam_xmat[self.id].reshape(3, 3)  # columns: camera x (right), y (up), z (back)
        centre = self.data.cam_xpos[self.id]
        focal = 1.0 / np.tan(np.radians(self.model.cam_fovy[self.id]) / 2)  # in half-heights
        # The camera looks down its -z axis: depth w = -z_cam; x_img = f*x/(w*aspect), y_img = -f*y/w.
        intrinsics = np.array([[focal * height / width, 0, 0], [0, -focal, 0], [0, 0, -1.0]])
        return intrinsics @ np.hstack([rotation.T, -(rotation.T @ centre)[:, None]])

    def close(self) -> None:
        if self._renderer is not None:
            self._free()
            self._renderer = None


def _free_renderer(renderer: mujoco.Renderer) -> None:
    """Free MuJoCo's render context inside the renderer's own GL context, then the GL context.

    mujoco.Renderer.close (also run by its __del__) frees the GL context first. Under OSMesa that leaves
    the current context current, often another renderer's, and mjr_freeContext then deletes the
    framebuffer, renderbuffers and textures by name in *that* context. Names are counted per context
    (every renderer's offscreen framebuffer is 1), so the other renderer loses its own and renders
    wrong or black frames for good. (EGL's free releases the current context first, so there the
    deletes hit nothing.)
    """
    gl, mjr = renderer._gl_context, renderer._mjr_context
    renderer._gl_context = renderer._mjr_context = None  # so the renderer's own close() does nothing
    if gl is not None:
        gl.make_current()
    if mjr is not None:
        mjr.free()
    if gl is not None:
        gl.free()  # also unbinds it, as it is current
