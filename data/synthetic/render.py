"""A chest-radiograph-like renderer: anatomy on a grid, findings painted on top.

Coordinates are normalised: x and y run from -1 to 1 across the image, y downwards, and x = -1
is the image's left, which is the patient's right on a PA view (the heart bulges to image right).
Every distance below is in these units (1.0 = half the image width), so a picture looks the same
at any size and a finding keeps its proportions when the image is shrunk to 32-64 px.

Intensities are display values in [0, 1]: air dark, bone bright (a MONOCHROME2 picture). The
picture is built from four layers on a `Canvas`: soft tissue, lung `air` (a fraction that darkens),
bone, and `opacity` (extra density: fluid, nodules, calcium, metal). Everything is vectorised
numpy; an image costs a few milliseconds at 256 px.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from data.synthetic.shapes import EDGE, ellipse, segment, sigmoid, smooth_noise

# Lung air darkens soft tissue by this much at full aeration (display units).
AIR_CONTRAST = 0.38


@dataclass(frozen=True)
class Chest:
    """One patient's anatomy (geometry and exposure). Findings may return a changed copy."""

    spine_x: float = 0.0          # midline of the spine
    scoliosis: float = 0.01       # lateral amplitude of the spinal curve (S shape)
    lung_cy: float = -0.08        # lung field centre height
    lung_rx: float = 0.33         # lung half width
    lung_ry: float = 0.62         # lung half height
    lung_gap: float = 0.1         # distance of each lung's medial edge from the spine
    diaphragm_y: float = 0.46     # dome top of the left hemidiaphragm (image right)
    heart_cx: float = 0.1
    heart_cy: float = 0.26
    heart_rx_right: float = 0.2   # towards the patient's right (image left)
    heart_rx_left: float = 0.34   # towards the patient's left (image right)
    heart_ry: float = 0.3
    knob_cx: float = 0.1          # aortic knob, left of the trachea
    knob_cy: float = -0.38
    knob_r: float = 0.075
    aorta_bulge: float = 0.0      # lateral excursion of the descending aorta into the left lung
    body_hw: float = 0.92         # half width of the torso
    rib_spacing: float = 0.19     # vertical distance between posterior ribs
    rib_phase: float = 0.0
    air_gain: float = 1.0         # >1 hyperlucent (emphysema), <1 under-aerated
    vessel_gain: float = 1.0      # strength of the lung markings
    gastric_air: float = 1.0      # 0..1 visibility of the stomach bubble below the left hemidiaphragm
    gastric_dx: float = 0.0       # its offset from the left lung's centre
    exposure: float = 1.0         # global contrast factor
    gamma: float = 1.0


def draw_chest(rng: np.random.Generator) -> Chest:
    """A random, normal-looking patient anatomy."""
    u = rng.uniform
    lung_rx = u(0.3, 0.36)
    heart_scale = u(0.9, 1.08)
    return Chest(
        spine_x=u(-0.03, 0.03),
        scoliosis=u(-0.015, 0.015),
        lung_cy=u(-0.12, -0.04),
        lung_rx=lung_rx,
        lung_ry=u(0.56, 0.66),
        lung_gap=u(0.08, 0.12),
        diaphragm_y=u(0.4, 0.52),
        heart_cx=u(0.07, 0.13),
        heart_cy=u(0.22, 0.28),
        heart_rx_right=0.19 * heart_scale,
        heart_rx_left=0.33 * heart_scale,
        heart_ry=0.29 * heart_scale,
        knob_cx=u(0.08, 0.12),
        knob_cy=u(-0.42, -0.34),
        knob_r=u(0.065, 0.085),
        body_hw=u(0.86, 0.96),
        rib_spacing=u(0.17, 0.21),
        rib_phase=u(0.0, 1.0),
        air_gain=u(0.92, 1.08),
        vessel_gain=u(0.85, 1.15),
        gastric_air=float(rng.random() < 0.7) * u(0.5, 1.0),
        gastric_dx=u(-0.12, 0.05),
        exposure=u(0.92, 1.08),
        gamma=u(0.9, 1.1),
    )


@dataclass
class Canvas:
    """The grid, the anatomy, and the layers findings paint on (all float32, size x size)."""

    chest: Chest
    size: int
    x: np.ndarray
    y: np.ndarray
    lungs: dict[int, np.ndarray] = field(default_factory=dict)  # side (-1 image left, +1 right) -> mask
    air: np.ndarray | None = None
    opacity: np.ndarray | None = None
    vessels: np.ndarray | None = None

    def lung_center_x(self, side: int) -> float:
        c = self.chest
        return c.spine_x + side * (c.lung_gap + c.lung_rx)

    def lung_point(self, rng: np.random.Generator, side: int, *, zone: str = "any") -> tuple[float, float]:
        """A random point well inside one lung field (zone: upper, lower or any)."""
        c = self.chest
        low, high = {"upper": (-0.75, -0.2), "lower": (0.05, 0.55), "any": (-0.7, 0.45)}[zone]
        v = rng.uniform(low, high)
        u = rng.uniform(-0.55, 0.6) * side  # lateral rather than against the heart
        return self.lung_center_x(side) + u * c.lung_rx, c.lung_cy + v * c.lung_ry

    def spine_x_at(self, y: np.ndarray | float) -> np.ndarray | float:
        c = self.chest
        return c.spine_x + c.scoliosis * np.sin(np.pi * (np.asarray(y) + 0.9) / 0.75)

    def in_lungs(self) -> np.ndarray:
        return self.lungs[-1] + self.lungs[1]


def pick_sides(rng: np.random.Generator) -> tuple[int, ...]:
    """One lung (either side, -1 image left / +1 image right) or both."""
    return ((-1,), (1,), (-1, 1))[rng.integers(3)]


# A finding changes the anatomy before drawing (adjust) and/or paints on the canvas after (paint).
Adjust = Callable[[Chest, np.random.Generator], Chest]
Paint = Callable[[Canvas, np.random.Generator], None]


@dataclass(frozen=True)
class Signature:
    """How one finding shows on the picture."""

    adjust: Adjust | None = None
    paint: Paint | None = None


def _diaphragm(canvas: Canvas, side: int) -> np.ndarray:
    """Dome of one hemidiaphragm: highest mid-lung, deeper at the costophrenic angle."""
    c = canvas.chest
    lift = 0.04 if side < 0 else 0.0  # the right hemidiaphragm sits a little higher
    rel = (canvas.x - canvas.lung_center_x(side)) / c.lung_rx
    return c.diaphragm_y - lift + 0.1 * rel**2


def _anatomy(canvas: Canvas, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(soft tissue with mediastinum, bone, body mask) layers; fills canvas.lungs, air and vessels."""
    c, x, y = canvas.chest, canvas.x, canvas.y
    neck_hw = 0.22
    body_hw = neck_hw + (c.body_hw - neck_hw) * sigmoid(y + 0.78, 0.06)
    body = sigmoid(body_hw - np.abs(x - 0.3 * c.spine_x), 0.03)
    dia = np.minimum(_diaphragm(canvas, -1), _diaphragm(canvas, 1))
    tissue = 0.5 + 0.14 * sigmoid(y - dia, 0.03) + 0.04 * (np.abs(x) / c.body_hw) ** 4

    mid_x = canvas.spine_x_at(y) * 0.7 + 0.3 * c.spine_x
    med_hw = 0.085 + 0.05 * sigmoid(y + 0.1, 0.1)
    mediastinum = sigmoid(med_hw - np.abs(x - mid_x), EDGE) * sigmoid(c.heart_cy - y, 0.05)
    heart_rx = np.where(x < c.heart_cx, c.heart_rx_right, c.heart_rx_left)
    heart_q = np.sqrt(((x - c.heart_cx) / heart_rx) ** 2 + ((y - c.heart_cy) / c.heart_ry) ** 2)
    heart = sigmoid((1.0 - heart_q) * c.heart_ry, EDGE)
    knob = ellipse(x, y, c.knob_cx, c.knob_cy, c.knob_r, c.knob_r)
    # Descending aorta: hidden behind the spine unless it bulges (tortuosity) into the left lung.
    aorta_x = c.knob_cx - 0.02 + c.aorta_bulge * np.sin(np.pi * np.clip((y - c.knob_cy) / 0.7, 0, 1))
    aorta = sigmoid(0.05 - np.abs(x - aorta_x), EDGE) * sigmoid(y - c.knob_cy, 0.02) * sigmoid(0.3 - y, 0.05)
    solid = np.maximum.reduce([mediastinum, heart, knob, aorta])

    for side in (-1, 1):
        cx = canvas.lung_center_x(side)
        # Narrower at the apex than at the base, like a rounded triangle.
        rx = c.lung_rx * (0.86 + 0.14 * np.tanh((y - c.lung_cy + 0.1) / 0.35))
        q = np.abs((x - cx) / rx) ** 2.2 + np.abs((y - c.lung_cy) / c.lung_ry) ** 2.4
        field_mask = sigmoid((1.0 - q) * c.lung_rx * 0.5, EDGE) * sigmoid(_diaphragm(canvas, side) - y, EDGE)
        canvas.lungs[side] = (field_mask * (1.0 - solid)).astype(np.float32)
    lungs = canvas.in_lungs()
    # Lung apices are covered by more soft tissue, the bases by less: a mild vertical gradient.
    canvas.air = lungs * (0.85 + 0.15 * sigmoid(y + 0.45, 0.2)) * c.air_gain
    texture = 0.03 * smooth_noise(rng, canvas.size, 18) + 0.02 * smooth_noise(rng, canvas.size, 40)
    canvas.vessels = (_vessels(canvas, rng) + texture) * lungs

    trachea = sigmoid(0.028 - np.abs(x - mid_x), 0.01) * sigmoid(-0.3 - y, 0.04) * sigmoid(y + 0.95, 0.04)
    bone = _bones(canvas, body, dia)
    # Gastric air bubble under the left hemidiaphragm (image right), in most patients.
    bubble = ellipse(x, y, canvas.lung_center_x(1) + c.gastric_dx, c.diaphragm_y + 0.13, 0.12, 0.07) * c.gastric_air
    soft = body * tissue + 0.03 * body * solid - 0.13 * trachea - 0.2 * bubble
    return soft.astype(np.float32), bone.astype(np.float32), body.astype(np.float32)


def _vessels(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Branching lung markings: radial streaks from each hilum, fading towards the periphery.

    Two families of streaks (few thick trunks near the hilum, more thin branches further out)
    with wobbling angles look like a vascular tree rather than a sunburst.
    """
    c, x, y = canvas.chest, canvas.x, canvas.y
    out = np.zeros_like(x)
    for side in (-1, 1):
        hx, hy = canvas.lung_center_x(side) - side * 0.55 * c.lung_rx, c.lung_cy + 0.15
        r = np.hypot(x - hx, y - hy)
        theta = np.arctan2(y - hy, x - hx)
        wobble = 1.2 * smooth_noise(rng, canvas.size, 7) + 0.5 * np.sin(11.0 * r + rng.uniform(0, 6.3))
        trunks = np.square(np.square(np.clip(np.cos(rng.integers(7, 10) * theta + wobble), 0, 1)))
        branches = np.clip(np.cos(rng.integers(18, 24) * theta + 1.5 * wobble), 0, 1)
        branches = np.square(branches * branches * branches)
        trunks, branches = trunks * sigmoid(r - 0.06, 0.03), branches * sigmoid(r - 0.2, 0.05)
        out += (trunks + 0.7 * branches) * np.exp(-r / 0.32) + 0.6 * np.exp(-(r / 0.09) ** 2)
    return out * 0.11 * c.vessel_gain


def _bones(canvas: Canvas, body: np.ndarray, dia: np.ndarray) -> np.ndarray:
    c, x, y = canvas.chest, canvas.x, canvas.y
    spine_x = canvas.spine_x_at(y)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * (y + 0.02) / 0.105)
    spine = sigmoid(0.075 - np.abs(x - spine_x), 0.015) * (0.09 + 0.05 * vertebrae) * sigmoid(y + 0.98, 0.03)

    # Posterior ribs: from the spine up and out, then down along the lateral chest wall.
    u = np.abs(x - spine_x)
    phase = (y + 0.4 * u - 0.85 * u**2) / c.rib_spacing + c.rib_phase
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** 2
    cage = sigmoid(c.body_hw - 0.06 - u, 0.03) * sigmoid(dia + 0.05 - y, 0.05) * sigmoid(y + 0.85, 0.05)
    ribs = ribs * cage * sigmoid(u - 0.06, 0.02)

    clavicles = np.zeros_like(x)
    humeri = np.zeros_like(x)
    for side in (-1, 1):
        clavicles += segment(x, y, c.spine_x + side * 0.08, -0.7, side * 0.72, -0.86, 0.03)
        humeri += ellipse(x, y, side * (c.body_hw + 0.02), -0.72, 0.12, 0.14)
    bone = spine + 0.09 * ribs + 0.16 * clavicles + 0.18 * humeri
    return bone * body


def render_chest(
    chest: Chest,
    signatures: Iterable[Signature],
    *,
    image_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one radiograph: float32 (image_size x image_size) in [0, 1], air dark, bone bright."""
    signatures = list(signatures)
    # Findings draw from their own stream, so the same patient looks the same with or without them.
    finding_rng = np.random.default_rng(rng.integers(2**63))
    for signature in signatures:
        if signature.adjust is not None:
            chest = signature.adjust(chest, finding_rng)
    axis = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
    x, y = np.meshgrid(axis, axis)
    canvas = Canvas(chest=chest, size=image_size, x=x, y=y)
    soft, bone, body = _anatomy(canvas, rng)
    canvas.opacity = np.zeros_like(x)
    for signature in signatures:
        if signature.paint is not None:
            signature.paint(canvas, finding_rng)

    image = soft - AIR_CONTRAST * canvas.air + canvas.vessels + bone + canvas.opacity
    image = image + 0.02 * smooth_noise(rng, image_size, 6) * body  # uneven exposure
    background = 0.04
    image = background + (image - background) * chest.exposure
    image = np.clip(image, 0.0, 1.0) ** chest.gamma
    # Quantum noise, a fixed fraction of the range: it survives downsizing as a faint grain.
    image = image + rng.normal(0.0, 0.012, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def lung_fields(chest: Chest, *, image_size: int) -> np.ndarray:
    """The soft mask (0..1) of both lung fields, heart and mediastinum excluded (for checks and tests)."""
    axis = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
    x, y = np.meshgrid(axis, axis)
    canvas = Canvas(chest=chest, size=image_size, x=x, y=y)
    _anatomy(canvas, np.random.default_rng(0))
    return canvas.in_lungs()
