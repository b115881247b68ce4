"""The study's 19 hospital sub-categories (data/taxonomies/study.yaml) -> how each shows on a synthetic
radiograph. Most reuse the painters of data/synthetic/findings.py and data/synthetic/findings_nih.py, picked for
the radiology the name describes; three are drawn here (a calcified descending aortic wall, prominent
hila, and tuberculosis's upper-zone scars with a calcified granuloma). `normal` has no signature.
"""
from __future__ import annotations

import numpy as np

from data.synthetic.findings import SIGNATURES
from data.synthetic.findings_nih import NIH_SIGNATURES
from data.synthetic.render import Canvas, Signature
from data.synthetic.shapes import ellipse, segment


def _aortic_wall(canvas: Canvas, rng: np.random.Generator) -> None:
    # A thin calcified line along the descending aorta: from the knob down beside the spine, on the left.
    c = canvas.chest
    x0, y0 = c.knob_cx + c.knob_r * 0.6, c.knob_cy + 0.05
    x1, y1 = c.spine_x + rng.uniform(0.1, 0.14), c.heart_cy + 0.1
    canvas.opacity += rng.uniform(0.42, 0.55) * segment(canvas.x, canvas.y, x0, y0, x1, y1, 0.022, edge=0.006)


def _prominent_hila(canvas: Canvas, rng: np.random.Generator) -> None:
    # Enlarged, dense hilar shadows on both sides of the mediastinum.
    c = canvas.chest
    for side in (-1, 1):
        hx = canvas.lung_center_x(side) - side * 0.45 * c.lung_rx
        canvas.opacity += rng.uniform(0.3, 0.36) * ellipse(canvas.x, canvas.y, hx, c.lung_cy + 0.02,
                                                            0.09, 0.13) * canvas.lungs[side]


def _tuberculosis(canvas: Canvas, rng: np.random.Generator) -> None:
    SIGNATURES["fibrotic_streak"].paint(canvas, rng)        # upper-zone scarring
    SIGNATURES["calcified_granuloma"].paint(canvas, rng)    # a healed focus


STUDY_SIGNATURES: dict[str, Signature] = {
    "aortic_arch_atherosclerotic_plaque": SIGNATURES["aortic_knob_calcification"],
    "aortic_arch_calcification": SIGNATURES["aortic_arch_calcification"],
    "aortic_calcification_other": SIGNATURES["aortic_knob_calcification"],  # its name is illegible in the source
    "aortic_wall_calcification": Signature(paint=_aortic_wall),
    "aortic_curvature": SIGNATURES["aortic_tortuosity"],
    "thoracic_vertebral_artery_curvature": SIGNATURES["aortic_elongation"],
    "small_pulmonary_nodules": SIGNATURES["nodule"],
    "shadows_of_pulmonary_nodules": SIGNATURES["mass"],
    "tuberculosis": Signature(paint=_tuberculosis),
    "pulmonary_fibrosis": SIGNATURES["interstitial_pattern"],
    "increased_lung_streak": SIGNATURES["increased_lung_markings"],
    "lung_field_infiltration": NIH_SIGNATURES["Infiltration"],
    "obvious_hilar": Signature(paint=_prominent_hila),
    "degenerative_joint_disease_of_the_thoracic_spine": SIGNATURES["degenerative_spine"],
    "scoliosis": SIGNATURES["scoliosis"],
    "intercostal_pleural_thickening": SIGNATURES["pleural_thickening"],
    "cardiac_hypertrophy": SIGNATURES["cardiomegaly"],
    "heart_pacemaker_placement": SIGNATURES["pacemaker"],
}
