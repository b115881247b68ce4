"""How each finding shows on a synthetic radiograph (see data/render.py for units and layers).

`SIGNATURES` maps a finding name to its `Signature`. The hospital taxonomy's sub-categories and
NIH's findings draw on the same painters where the radiology is the same (an enlarged heart is
`cardiomegaly` in both; NIH `Nodule` is the hospital `nodule`), so a model pretrained on the NIH-style
set has seen the hospital set's signatures. Amplitudes are bold on purpose: every signature must
stay visible after the image is shrunk to 32 px (features at least ~0.1 units = 1.6 px wide there).
"""
from __future__ import annotations

import numpy as np

from data.render import Canvas, Chest, Signature, blob, ellipse, segment, sigmoid, smooth_noise, with_changes


def _sides(rng: np.random.Generator) -> tuple[int, ...]:
    """One lung (either side) or both."""
    return ((-1,), (1,), (-1, 1))[rng.integers(3)]


# --- heart and aorta --------------------------------------------------------------------------

def _enlarge_heart(chest: Chest, rng: np.random.Generator) -> Chest:
    scale = rng.uniform(1.3, 1.45)  # cardiothoracic ratio ~0.55-0.65 instead of ~0.4-0.48
    return with_changes(
        chest,
        heart_rx_right=chest.heart_rx_right * scale,
        heart_rx_left=chest.heart_rx_left * scale,
        heart_ry=chest.heart_ry * rng.uniform(1.05, 1.15),
    )


def _enlarge_left_ventricle(chest: Chest, rng: np.random.Generator) -> Chest:
    # The apex grows outwards and down: the left heart border moves towards the chest wall.
    return with_changes(
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
    return with_changes(chest, aorta_bulge=rng.uniform(0.16, 0.22), knob_cx=chest.knob_cx + 0.03)


def _elongated_aorta(chest: Chest, rng: np.random.Generator) -> Chest:
    return with_changes(
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
    for side in _sides(rng):
        for _ in range(rng.integers(3, 6)):
            x0, y0 = canvas.lung_point(rng, side, zone="upper")
            length, angle = rng.uniform(0.15, 0.3), rng.uniform(0.6, 1.3)
            x1, y1 = x0 - side * length * np.cos(angle), y0 + length * np.sin(angle)
            canvas.opacity += 0.24 * segment(canvas.x, canvas.y, x0, y0, x1, y1, 0.022) * canvas.lungs[side]


def _calcified_granulomas(canvas: Canvas, rng: np.random.Generator) -> None:
    for _ in range(rng.integers(1, 3)):
        cx, cy = canvas.lung_point(rng, int(rng.choice([-1, 1])))
        canvas.opacity += 0.6 * ellipse(canvas.x, canvas.y, cx, cy, 0.04, 0.04, edge=0.008)


def _more_markings(chest: Chest, rng: np.random.Generator) -> Chest:
    return with_changes(chest, vessel_gain=chest.vessel_gain * rng.uniform(3.2, 3.6))


def _interstitial(canvas: Canvas, rng: np.random.Generator) -> None:
    # Reticular net in the lower zones: thin bright lines where two noise fields cross zero.
    a, b = smooth_noise(rng, canvas.size, 14), smooth_noise(rng, canvas.size, 14)
    net = np.maximum(sigmoid(0.12 - np.abs(a), 0.03), sigmoid(0.12 - np.abs(b), 0.03))
    lower = sigmoid(canvas.y - canvas.chest.lung_cy + 0.1, 0.12)
    canvas.opacity += (0.16 * net + 0.08) * lower * canvas.in_lungs()


# --- spine ------------------------------------------------------------------------------------

def _scoliosis(chest: Chest, rng: np.random.Generator) -> Chest:
    return with_changes(chest, scoliosis=float(rng.choice([-1, 1])) * rng.uniform(0.1, 0.14))


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
    for side in _sides(rng):
        top = c.lung_cy - rng.uniform(0.1, 0.4)
        _pleural_band(canvas, side, y_from=top, y_to=top + rng.uniform(0.45, 0.7),
                      thickness=rng.uniform(0.1, 0.13), amplitude=0.36)


def _apical_cap(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    apex = c.lung_cy - c.lung_ry
    for side in _sides(rng):
        cap = sigmoid(apex + rng.uniform(0.17, 0.22) - canvas.y, 0.02)
        canvas.opacity += 0.3 * cap * canvas.lungs[side]


# --- NIH-only findings ------------------------------------------------------------------------

def _effusion(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    for side in _sides(rng):
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
    return with_changes(chest, lung_ry=chest.lung_ry * 1.1, diaphragm_y=chest.diaphragm_y + 0.12,
                        air_gain=chest.air_gain * rng.uniform(1.25, 1.35), vessel_gain=chest.vessel_gain * 0.5,
                        heart_rx_left=chest.heart_rx_left * 0.88, heart_rx_right=chest.heart_rx_right * 0.88)


def _hiatal_hernia(canvas: Canvas, rng: np.random.Generator) -> None:
    c = canvas.chest
    cx, cy, r = c.spine_x + 0.05, c.heart_cy + 0.05, rng.uniform(0.14, 0.17)
    sac = ellipse(canvas.x, canvas.y, cx, cy, r, r * 0.9)
    gas = sac * sigmoid(cy - canvas.y, 0.01)  # air above the fluid level
    canvas.opacity += 0.2 * sac - 0.4 * gas


SIGNATURES: dict[str, Signature] = {
    # hospital sub-categories (data/taxonomies/study.yaml)
    "aortic_knob_calcification": Signature(paint=_calcify_knob),
    "aortic_arch_calcification": Signature(paint=_calcify_arch),
    "aortic_tortuosity": Signature(adjust=_tortuous_aorta),
    "aortic_elongation": Signature(adjust=_elongated_aorta),
    "nodule": Signature(paint=_nodules),
    "mass": Signature(paint=_mass),
    "fibrotic_streak": Signature(paint=_fibrotic_streaks),
    "calcified_granuloma": Signature(paint=_calcified_granulomas),
    "increased_lung_markings": Signature(adjust=_more_markings),
    "interstitial_pattern": Signature(paint=_interstitial),
    "scoliosis": Signature(adjust=_scoliosis),
    "degenerative_spine": Signature(paint=_degenerative),
    "compression_fracture": Signature(paint=_compression_fracture),
    "pleural_thickening": Signature(paint=_pleural_thickening),
    "apical_cap": Signature(paint=_apical_cap),
    "cardiomegaly": Signature(adjust=_enlarge_heart),
    "left_ventricular_hypertrophy": Signature(adjust=_enlarge_left_ventricle),
    "pacemaker": Signature(paint=_pacemaker),
    # NIH findings that have no hospital counterpart
    "effusion": Signature(paint=_effusion),
    "atelectasis": Signature(paint=_atelectasis),
    "infiltration": Signature(paint=_infiltration),
    "pneumonia": Signature(paint=_pneumonia),
    "consolidation": Signature(paint=_consolidation),
    "pneumothorax": Signature(paint=_pneumothorax),
    "edema": Signature(adjust=_more_markings, paint=_edema),
    "emphysema": Signature(adjust=_hyperinflate),
    "hiatal_hernia": Signature(paint=_hiatal_hernia),
}

# NIH finding name -> painter name: shared painters are what makes NIH pretraining transfer.
NIH_SIGNATURES: dict[str, str] = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "effusion",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrotic_streak",
    "Pleural_Thickening": "pleural_thickening",
    "Hernia": "hiatal_hernia",
}
