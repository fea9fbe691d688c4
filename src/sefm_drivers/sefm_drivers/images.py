"""Camera frames as the drivers publish them: sensor_msgs/Image, rgb8, rows packed (step = 3 x width)."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image


def rgb_image(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3,
                data=rgb.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg
