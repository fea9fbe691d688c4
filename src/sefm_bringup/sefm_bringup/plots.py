"""Report pictures drawn with OpenCV (no plotting library in the pinned set): curves and filmstrips as PNG."""
from __future__ import annotations

import cv2
import numpy as np

WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (0, 0, 0)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]   # RGB


def _axes(width, height, title, x_range, y_range, x_label, y_label):
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    cv2.rectangle(canvas, (left, top), (right, bottom), BLACK, 1)
    cv2.putText(canvas, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, BLACK, 1, cv2.LINE_AA)
    cv2.putText(canvas, x_label, (left + (right - left) // 2 - 40, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                BLACK, 1, cv2.LINE_AA)
    cv2.putText(canvas, y_label, (left + 4, top + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, BLACK, 1, cv2.LINE_AA)
    (x0, x1), (y0, y1) = x_range, y_range
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(bottom - frac * (bottom - top))
        cv2.line(canvas, (left, y), (right, y), GREY, 1)
        cv2.putText(canvas, f"{y0 + frac * (y1 - y0):.2g}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, BLACK, 1)
        x = int(left + frac * (right - left))
        cv2.putText(canvas, f"{x0 + frac * (x1 - x0):.4g}", (x - 10, bottom + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    BLACK, 1)

    def to_px(x, y):
        return (int(left + (x - x0) / (x1 - x0) * (right - left)), int(bottom - (y - y0) / (y1 - y0) * (bottom - top)))
    return canvas, to_px


def _save(path, rgb) -> None:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def success_curve(path, points: list[tuple[float, float, float, float]], width=480, height=300) -> None:
    """points: (practice episodes, success, low, high) with the 95% interval as a bar."""
    success_curves(path, {"": points}, width, height)


def success_curves(path, series: dict[str, list[tuple[float, float, float, float]]], width=480, height=300) -> None:
    """One curve per label (a legend when labels are given); points as in success_curve."""
    xs = [p[0] for points in series.values() for p in points]
    canvas, to_px = _axes(width, height, "held-out success vs practice episodes", (0, max(xs) or 1), (0, 1),
                          "practice episodes", "success")
    for k, (label, points) in enumerate(series.items()):
        colour, prev = COLOURS[k % len(COLOURS)], None
        for x, rate, low, high in points:
            cv2.line(canvas, to_px(x, low), to_px(x, high), colour, 1)
            cv2.circle(canvas, to_px(x, rate), 4, colour, -1)
            if prev is not None:
                cv2.line(canvas, prev, to_px(x, rate), colour, 2, cv2.LINE_AA)
            prev = to_px(x, rate)
        if label:
            y = height - 60 - 16 * k
            cv2.line(canvas, (70, y - 4), (90, y - 4), colour, 2)
            cv2.putText(canvas, label, (96, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, BLACK, 1, cv2.LINE_AA)
    _save(path, canvas)


def episode_curves(path, episodes: dict, width=480, height=300) -> None:
    """Steps-to-go d (solid) and reward (thin) of sample practice episodes, against the step."""
    series = {name: (ep.extras["steps_to_go"], ep.rewards) for name, ep in episodes.items()}
    longest = max(len(d) for d, _ in series.values())
    top = max(max(float(np.max(d)) for d, _ in series.values()), 1.0)
    low = min(0.0, min(float(np.min(r)) for _, r in series.values()))
    canvas, to_px = _axes(width, height, "steps-to-go d (thick) and reward d_t - d_t+1 (thin)", (0, longest),
                          (low, top), "step", "d / reward")
    for i, (name, (d, r)) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        for values, thickness in ((d, 2), (r, 1)):
            pts = [to_px(t, float(v)) for t, v in enumerate(values)]
            for a, b in zip(pts, pts[1:]):
                cv2.line(canvas, a, b, colour, thickness, cv2.LINE_AA)
        cv2.putText(canvas, name, (width - 170, 50 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    _save(path, canvas)


def filmstrip(path, rows: dict[str, np.ndarray], frames: int = 6, scale: int = 2) -> None:
    """One row per episode: `frames` frames evenly spaced from first to last, labelled."""
    strips = []
    for name, rgb in rows.items():
        picks = np.linspace(0, len(rgb) - 1, frames).round().astype(int)
        row = np.concatenate([np.pad(rgb[i], ((0, 0), (0, 2), (0, 0)), constant_values=255) for i in picks], axis=1)
        row = cv2.resize(row, (row.shape[1] * scale, row.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        label = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, f"{name}: steps {', '.join(str(i) for i in picks)}", (4, 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, BLACK, 1, cv2.LINE_AA)
        strips += [label, row]
    _save(path, np.concatenate(strips, axis=0))
