"""How each hospital finding shows on a synthetic radiograph (see data/synthetic/render.py for units and layers).

`SIGNATURES` maps each sub-category of data/taxonomies/study.yaml to its `Signature`; NIH's findings
(data/synthetic/findings_nih.py) reuse these where the radiology is the same, so a model pretrained on the
NIH-style set has seen the hospital set's signatures. Amplitudes are bold on purpose: every signature must
stay visible after the image is shrunk to 32 px (features at least ~0.1 units = 1.6 px wide there).
"""
from __future__ import annotations

import numpy as np

from dataclasses import replace

from data.synthetic.render import Canvas, Chest, Signature, pick_sides
from data.synthetic.shapes import ellipse, segment, sigmoid, smooth_noise



# --- heart and aorta --------------------------------------------------------------------------

def _enlarge_heart(chest: Chest, rng: np.random.Generator) -> Chest:
    scale = rng.uniform(1.3, 1.45)  # cardiothoracic ratio ~0.55-0.65 instead of ~0.4-0.48
    return replace(
        chest,
        heart_rx_right=chest.heart_rx_right * scale,
        heart_rx_left=chest.heart_rx_left * scale,
        heart_ry=chest.heart_ry * rng.uniform(1.05, 1.15),
    )


def _enlarge_left_ventricle(chest: Chest, rng: np.random.Generator) -> Chest:
    # The apex grows outwards and down: the left heart border moves towards the chest wall.
    return replace(
        chest,
        heart_rx_left=chest.heart_rx_left * rng.uniform(1.4, 1.55),
        heart_cy=chest.heart_cy + 0.04,
        heart_ry=chest.heart_ry * 1.1,
    )


def _calcify_knob(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    _arc(canvas, c.knob_cx, c.knob_cy, c.knob_r, start=-2.6, stop=0.4, amplitude=rng.uniform(0.42, 0.55))


def _calcify_arch(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    # A longer arc over the arch, from the trachea round the top of the knob.
    _arc(canvas, c.knob_cx - 0.04, c.knob_cy + 0.02, c.knob_r + 0.04, start=-3.0, stop=-0.3,
         amplitude=rng.uniform(0.42, 0.55))


def _arc(canvas: Canvas, cx: float, cy: float, radius: float, *, start: float, stop: float,
         amplitude: float) -> None:
    x, y = canvas.x, canvas.y
    r = np.hypot(x - cx, y - cy)
    angle = np.arctan2(y - cy, x - cx)
    along = sigmoid(angle - start, 0.1) * sigmoid(stop - angle, 0.1)
    canvas.opacity += amplitude * sigmoid(0.028 - np.abs(r - radius), 0.008) * along


def _tortuous_aorta(chest: Chest, rng: np.random.Generator) -> Chest:
    return replace(chest, aorta_bulge=rng.uniform(0.16, 0.22), knob_cx=chest.knob_cx + 0.03)


def _elongated_aorta(chest: Chest, rng: np.random.Generator) -> Chest:
    return replace(
        chest,
        knob_cy=chest.knob_cy - rng.uniform(0.08, 0.12),
        knob_r=chest.knob_r * rng.uniform(1.5, 1.7),
        knob_cx=chest.knob_cx + 0.06,
        aorta_bulge=0.08,
    )


def _pacemaker(canvas: Canvas, rng: np.random.Generator) -> None:
    c, x, y = canvas.chest, canvas.x, canvas.y
    px, py = rng.uniform(0.4, 0.55), rng.uniform(-0.72, -0.6)  # below the left clavicle
    device = ellipse(x, y, px, py, 0.1, 0.065, edge=0.006)
    lead = np.zeros_like(x)
    # The lead runs medially to the superior vena cava, then down into the right ventricle.
    points = [(px, py), (c.spine_x - 0.05, c.knob_cy - 0.05), (c.spine_x - 0.08, c.heart_cy - 0.1),
              (c.heart_cx + 0.1, c.heart_cy + 0.1)]
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        lead = np.maximum(lead, segment(x, y, x0, y0, x1, y1, 0.012, edge=0.004))
    canvas.opacity += 0.75 * device + 0.55 * lead


# --- lung fields ------------------------------------------------------------------------------

def _nodules(canvas: Canvas, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(1, 4)):
        cx, cy = canvas.lung_point(rng, int(rng.choice([-1, 1])))
        canvas.opacity += rng.uniform(0.3, 0.36) * ellipse(canvas.x, canvas.y, cx, cy, r := rng.uniform(0.06, 0.08), r)


def _mass(canvas: Canvas, rng: np.random.Generator) -> None:
    cx, cy = canvas.lung_point(rng, int(rng.choice([-1, 1])))
    r = rng.uniform(0.13, 0.18)
    lobulated = 1.0 + 0.15 * smooth_noise(rng, canvas.size, 10)
    canvas.opacity += rng.uniform(0.34, 0.4) * sigmoid(
        r * lobulated - np.hypot(canvas.x - cx, canvas.y - cy), 0.02)


def _fibrotic_streaks(canvas: Canvas, rng: np.random.Generator) -> None:
    # Coarse linear scars radiating from the upper zones towards the hilum.
    for side in pick_sides(rng):
        for _ in range(rng.integers(3, 6)):
            x0, y0 = canvas.lung_point(rng, side, zone="upper")
            length, angle = rng.uniform(0.15, 0.3), rng.uniform(0.6, 1.3)
            x1, y1 = x0 - side * length * np.cos(angle), y0 + length * np.sin(angle)
            canvas.opacity += 0.24 * segment(canvas.x, canvas.y, x0, y0, x1, y1, 0.022) * canvas.lungs[side]


def _calcified_granulomas(canvas: Canvas, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(1, 3)):
        cx, cy = canvas.lung_point(rng, int(rng.choice([-1, 1])))
        canvas.opacity += 0.6 * ellipse(canvas.x, canvas.y, cx, cy, 0.04, 0.04, edge=0.008)


def more_markings(chest: Chest, rng: np.random.Generator) -> Chest:
    return replace(chest, vessel_gain=chest.vessel_gain * rng.uniform(3.2, 3.6))


def _interstitial(canvas: Canvas, rng: np.random.Generator) -> None:
    # Reticular net in the lower zones: thin bright lines where two noise fields cross zero.
    a, b = smooth_noise(rng, canvas.size, 14), smooth_noise(rng, canvas.size, 14)
    net = np.maximum(sigmoid(0.12 - np.abs(a), 0.03), sigmoid(0.12 - np.abs(b), 0.03))
    lower = sigmoid(canvas.y - canvas.chest.lung_cy + 0.1, 0.12)
    canvas.opacity += (0.16 * net + 0.08) * lower * canvas.in_lungs()


# --- spine ------------------------------------------------------------------------------------

def _scoliosis(chest: Chest, rng: np.random.Generator) -> Chest:
    return replace(chest, scoliosis=float(rng.choice([-1, 1])) * rng.uniform(0.1, 0.14))


def _degenerative(canvas: Canvas, rng: np.random.Generator) -> None:
    # Osteophytes: bright spurs at the vertebral margins, and sclerotic endplates.
    for level in np.arange(-0.2, 0.75, 0.105):
        for side in (-1, 1):
            if rng.random() < 0.75:
                sx = float(canvas.spine_x_at(level)) + side * 0.085
                canvas.opacity += 0.32 * ellipse(canvas.x, canvas.y, sx, level, 0.045, 0.03, edge=0.01)
    endplates = (0.5 + 0.5 * np.cos(2 * np.pi * (canvas.y + 0.02) / 0.105 + np.pi)) ** 8
    canvas.opacity += 0.08 * endplates * sigmoid(0.08 - np.abs(canvas.x - canvas.spine_x_at(canvas.y)), 0.01)


def _compression_fracture(canvas: Canvas, rng: np.random.Generator) -> None:
    level = rng.uniform(0.0, 0.45)
    sx = float(canvas.spine_x_at(level))
    # A flattened, sclerotic vertebral body, wider than its neighbours.
    canvas.opacity += 0.35 * ellipse(canvas.x, canvas.y, sx, level, 0.12, 0.035, edge=0.01)


# --- pleura -----------------------------------------------------------------------------------

def _pleural_band(canvas: Canvas, side: int, *, y_from: float, y_to: float, thickness: float,
                  amplitude: float) -> None:
    c = canvas.chest
    wall = canvas.lung_center_x(side) + side * c.lung_rx * 0.97
    band = sigmoid(thickness - side * (wall - canvas.x), 0.015) * sigmoid(canvas.y - y_from, 0.03)
    canvas.opacity += amplitude * band * sigmoid(y_to - canvas.y, 0.03) * canvas.lungs[side]


def _pleural_thickening(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    for side in pick_sides(rng):
        top = c.lung_cy - rng.uniform(0.1, 0.4)
        _pleural_band(canvas, side, y_from=top, y_to=top + rng.uniform(0.45, 0.7),
                      thickness=rng.uniform(0.1, 0.13), amplitude=0.36)


def _apical_cap(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    apex = c.lung_cy - c.lung_ry
    for side in pick_sides(rng):
        cap = sigmoid(apex + rng.uniform(0.17, 0.22) - canvas.y, 0.02)
        canvas.opacity += 0.3 * cap * canvas.lungs[side]


SIGNATURES: dict[str, Signature] = {
    "aortic_knob_calcification": Signature(paint=_calcify_knob),
    "aortic_arch_calcification": Signature(paint=_calcify_arch),
    "aortic_tortuosity": Signature(adjust=_tortuous_aorta),
    "aortic_elongation": Signature(adjust=_elongated_aorta),
    "nodule": Signature(paint=_nodules),
    "mass": Signature(paint=_mass),
    "fibrotic_streak": Signature(paint=_fibrotic_streaks),
    "calcified_granuloma": Signature(paint=_calcified_granulomas),
    "increased_lung_markings": Signature(adjust=more_markings),
    "interstitial_pattern": Signature(paint=_interstitial),
    "scoliosis": Signature(adjust=_scoliosis),
    "degenerative_spine": Signature(paint=_degenerative),
    "compression_fracture": Signature(paint=_compression_fracture),
    "pleural_thickening": Signature(paint=_pleural_thickening),
    "apical_cap": Signature(paint=_apical_cap),
    "cardiomegaly": Signature(adjust=_enlarge_heart),
    "left_ventricular_hypertrophy": Signature(adjust=_enlarge_left_ventricle),
    "pacemaker": Signature(paint=_pacemaker),
}
