"""RT-2-style action tokens: each action dimension discretised into uniform bins within its bounds."""
from __future__ import annotations

import numpy as np
import torch


class ActionTokenizer:
    def __init__(self, low, high, bins: int = 64):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1:
            raise ValueError(f"action bounds must be two equal-length vectors, got {self.low.shape}, {self.high.shape}")
        if not np.all(self.high > self.low):
            raise ValueError("every action dimension needs high > low")
        if bins < 2:
            raise ValueError(f"need at least 2 bins, got {bins}")
        self.bins = bins
        self.width = (self.high - self.low) / bins

    @property
    def dims(self) -> int:
        return len(self.low)

    def encode(self, actions) -> np.ndarray:
        """(..., dims) continuous -> (..., dims) int64 bin indices (values clipped to the bounds)."""
        a = np.clip(np.asarray(actions, dtype=np.float64), self.low, self.high)
        return np.minimum(((a - self.low) / self.width).astype(np.int64), self.bins - 1)

    def decode(self, tokens) -> np.ndarray:
        """(..., dims) bin indices -> (..., dims) bin centres."""
        t = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens)
        if np.any((t < 0) | (t >= self.bins)):
            raise ValueError(f"action tokens outside 0..{self.bins - 1}")
        return self.low + (t + 0.5) * self.width

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "bins": self.bins}

    @classmethod
    def from_dict(cls, d: dict) -> "ActionTokenizer":
        return cls(d["low"], d["high"], d["bins"])
