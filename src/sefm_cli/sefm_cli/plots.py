"""Report pictures: matplotlib (the Agg backend, no screen) for curves, OpenCV only to scale filmstrip frames."""
from __future__ import annotations

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def success_curve(path, points: list[tuple[float, float, float, float]]) -> None:
    """points: (practice episodes, success, low, high): the held-out success with its 95% interval."""
    success_curves(path, {"": points})


def success_curves(path, series: dict[str, list[tuple[float, float, float, float]]]) -> None:
    """One curve per label (a legend when labels are given); points as in success_curve."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, points in series.items():
        x, rate, low, high = (np.array(v, float) for v in zip(*sorted(points)))
        ax.errorbar(x, rate, yerr=[rate - low, high - rate], marker="o", capsize=3, label=label or None)
    ax.set(xlabel="practice episodes", ylabel="held-out success", ylim=(0, 1),
           title="held-out success vs practice episodes (95% Wilson intervals)")
    ax.grid(alpha=0.3)
    if any(series):
        ax.legend(loc="lower right")
    _save(fig, path)


def episode_curves(path, episodes: dict) -> None:
    """Steps-to-go d and the reward d_t - d_t+1 of sample practice episodes, against the step."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), dpi=100, sharex=True)
    for name, ep in episodes.items():
        d = ep.extras["steps_to_go"]
        line, = top.plot(np.arange(len(d)), d, marker=".", label=name)
        bottom.plot(np.arange(len(ep.rewards)), ep.rewards, marker=".", color=line.get_color())
    top.set(ylabel="steps-to-go d", title="sample practice episodes")
    bottom.set(xlabel="step", ylabel="reward d_t - d_t+1")
    bottom.axhline(0, color="grey", linewidth=0.8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8)
    _save(fig, path)


def filmstrip(path, rows: dict[str, np.ndarray], frames: int = 6, scale: int = 2) -> None:
    """One row per episode: `frames` frames evenly spaced from first to last, labelled with their steps."""
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.6 * frames, 1.2 * len(rows) + 0.3), dpi=100,
                             squeeze=False)
    for row, (name, rgb) in zip(axes, rows.items()):
        picks = np.unique(np.linspace(0, len(rgb) - 1, frames).round().astype(int))   # a short episode: fewer
        for ax in row[len(picks):]:
            ax.axis("off")
        for ax, i in zip(row, picks):
            frame = cv2.resize(rgb[i], (rgb.shape[2] * scale, rgb.shape[1] * scale), interpolation=cv2.INTER_NEAREST)
            ax.imshow(frame)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"step {i}", fontsize=7)
        row[0].set_ylabel(name, fontsize=7)
    _save(fig, path)


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
