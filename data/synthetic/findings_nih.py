"""How NIH ChestX-ray14's findings show on a synthetic radiograph (see data/synthetic/render.py).

`NIH_SIGNATURES` maps each of NIH's 14 finding names to a `Signature`. Five reuse the hospital painters
of data/synthetic/findings.py (Cardiomegaly, Nodule, Mass, Fibrosis, Pleural_Thickening) and Edema reuses
their increased markings: the shared signatures are what make NIH-style pretraining transfer.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from data.synthetic.findings import SIGNATURES, more_markings
from data.synthetic.render import Canvas, Chest, Signature, pick_sides
from data.synthetic.shapes import blob, ellipse, segment, sigmoid, smooth_noise


def _effusion(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    for side in pick_sides(rng):
        # Fluid fills the base with a meniscus that climbs the lateral wall.
        level = c.diaphragm_y - rng.uniform(0.2, 0.3) - 0.25 * np.abs(canvas.x - canvas.lung_center_x(side))
        fluid = sigmoid(canvas.y - level, 0.04) * canvas.lungs[side]
        canvas.air *= 1.0 - 0.85 * fluid
        canvas.vessels *= 1.0 - fluid


def _atelectasis(canvas: Canvas, rng: np.random.Generator) -> None:
    side = int(rng.choice([-1, 1]))
    x0, y0 = canvas.lung_point(rng, side, zone="lower")
    plate = segment(canvas.x, canvas.y, x0 - 0.18, y0 + 0.03, x0 + 0.18, y0 - 0.03, 0.035)
    canvas.opacity += 0.3 * plate * canvas.lungs[side]
    canvas.air *= 1.0 - 0.25 * canvas.lungs[side] * sigmoid(canvas.y - y0, 0.05)


def _patches(canvas: Canvas, rng: np.random.Generator, *, amplitude: float, cells: int, zone: str) -> np.ndarray:
    side = int(rng.choice([-1, 1]))
    cx, cy = canvas.lung_point(rng, side, zone=zone)
    region = blob(canvas.x, canvas.y, cx, cy, rng.uniform(0.22, 0.3))
    patchy = sigmoid(smooth_noise(rng, canvas.size, cells) + 0.3, 0.15)
    opacity = amplitude * region * patchy * canvas.lungs[side]
    canvas.opacity += opacity
    return opacity


def _infiltration(canvas: Canvas, rng: np.random.Generator) -> None:
    _patches(canvas, rng, amplitude=0.32, cells=12, zone="any")


def _pneumonia(canvas: Canvas, rng: np.random.Generator) -> None:
    _patches(canvas, rng, amplitude=0.36, cells=6, zone="lower")


def _consolidation(canvas: Canvas, rng: np.random.Generator) -> None:
    opacity = _patches(canvas, rng, amplitude=0.42, cells=4, zone="any")
    # Air bronchograms: the dense region keeps dark branching airways.
    canvas.opacity -= 0.4 * opacity * sigmoid(0.1 - np.abs(smooth_noise(rng, canvas.size, 9)), 0.03)


def _pneumothorax(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    side = int(rng.choice([-1, 1]))
    # The collapsed lung's edge: a curve parallel to the chest wall, with no markings beyond it.
    edge_x = canvas.lung_center_x(side) + side * c.lung_rx * (0.2 + 0.5 * sigmoid(canvas.y - c.lung_cy, 0.2))
    outside = sigmoid(side * (canvas.x - edge_x), 0.01) * canvas.lungs[side]
    canvas.vessels *= 1.0 - outside
    canvas.air += 0.3 * outside
    canvas.opacity += 0.2 * sigmoid(0.012 - np.abs(canvas.x - edge_x), 0.005) * canvas.lungs[side]


def _edema(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    for side in (-1, 1):  # bat-wing haze around both hila
        hx = canvas.lung_center_x(side) - side * 0.4 * c.lung_rx
        canvas.opacity += 0.25 * blob(canvas.x, canvas.y, hx, c.lung_cy + 0.1, 0.3) * canvas.lungs[side]


def _hyperinflate(chest: Chest, rng: np.random.Generator) -> Chest:
    return replace(chest, lung_ry=chest.lung_ry * 1.1, diaphragm_y=chest.diaphragm_y + 0.12,
                        air_gain=chest.air_gain * rng.uniform(1.25, 1.35), vessel_gain=chest.vessel_gain * 0.5,
                        heart_rx_left=chest.heart_rx_left * 0.88, heart_rx_right=chest.heart_rx_right * 0.88)


def _hiatal_hernia(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    cx, cy, r = c.spine_x + 0.05, c.heart_cy + 0.05, rng.uniform(0.14, 0.17)
    sac = ellipse(canvas.x, canvas.y, cx, cy, r, r * 0.9)
    gas = sac * sigmoid(cy - canvas.y, 0.01)  # air above the fluid level
    canvas.opacity += 0.2 * sac - 0.4 * gas


NIH_SIGNATURES: dict[str, Signature] = {
    "Atelectasis": Signature(paint=_atelectasis),
    "Cardiomegaly": SIGNATURES["cardiomegaly"],
    "Effusion": Signature(paint=_effusion),
    "Infiltration": Signature(paint=_infiltration),
    "Mass": SIGNATURES["mass"],
    "Nodule": SIGNATURES["nodule"],
    "Pneumonia": Signature(paint=_pneumonia),
    "Pneumothorax": Signature(paint=_pneumothorax),
    "Consolidation": Signature(paint=_consolidation),
    "Edema": Signature(adjust=more_markings, paint=_edema),
    "Emphysema": Signature(adjust=_hyperinflate),
    "Fibrosis": SIGNATURES["fibrotic_streak"],
    "Pleural_Thickening": SIGNATURES["pleural_thickening"],
    "Hernia": Signature(paint=_hiatal_hernia),
}
