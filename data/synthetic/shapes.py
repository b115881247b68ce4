"""Soft-edged shapes on the normalised grid of data/synthetic/render.py (x, y in -1..1; 1.0 = half the width).

Each returns a float array in [0, 1] over the grid: 1 inside, 0 outside, with an edge `edge` wide, so a
shape drawn at 32 px and at 512 px covers the same part of the picture.
"""
from __future__ import annotations

import numpy as np

# Edge width of anatomical outlines (normalised units); ~2.5 px at 256 px, sub-pixel at 32 px.
EDGE = 0.02


def sigmoid(d: np.ndarray, edge: float = EDGE) -> np.ndarray:
    """Soft step: 0 outside (d < 0), 1 inside (d > 0), `edge` wide."""
    return 0.5 + 0.5 * np.tanh(d / (2.0 * edge))


def ellipse(x, y, cx, cy, rx, ry, edge: float = EDGE) -> np.ndarray:
    """Soft-edged filled ellipse (approximate signed distance in the smaller radius' units)."""
    q = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return sigmoid((1.0 - q) * min(rx, ry), edge)


def blob(x, y, cx, cy, r) -> np.ndarray:
    """Gaussian blob of 1/e radius r: an ill-defined round opacity."""
    return np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (r * r)))


def segment(x, y, x0, y0, x1, y1, half_width, edge: float = EDGE / 2) -> np.ndarray:
    """Soft line segment (a lead, a streak, a plate of atelectasis)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist = np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))
    return sigmoid(half_width - dist, edge)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [-1, 1] with `cells` features across the image."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0.0, cells, size, dtype=np.float32)
    i0 = np.minimum(t.astype(np.int64), cells - 1)
    f = (t - i0).astype(np.float32)
    # Separable: interpolate the rows of the small grid first, then the full-size columns.
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
