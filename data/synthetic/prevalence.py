"""Which findings a synthetic image gets: the study's and NIH's label tables, and the prevalence choices.

Prevalence: "study" draws each hospital image's one category from the study's table (68.3% normal,
heart pacemaker placement 0.36%), and its sub-category in the table's proportions; for NIH, NIH's own label
counts. "study-multilabel" (hospital) keeps the study's normal share but gives abnormal images 1-3
findings. "balanced" (30% normal, every category equally likely, 1-3 findings) gives a few hundred images
several positives per category, which small demos and learning tests need.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import DataError

PREVALENCES = ("study", "balanced", "study-multilabel")

# The study's table (E-Da hospital, 1,924 radiographs, one category each): category -> its sub-categories'
# image counts (data/taxonomies/study.yaml). Normal is 1,314 of them (68.3%).
STUDY_NORMAL_IMAGES = 1314
STUDY_TABLE: dict[str, dict[str, int]] = {
    "aortic_calcification": {"aortic_arch_atherosclerotic_plaque": 28, "aortic_arch_calcification": 16,
                             "aortic_calcification_other": 25, "aortic_wall_calcification": 22},
    "arterial_curvature": {"aortic_curvature": 67, "thoracic_vertebral_artery_curvature": 29},
    "abnormal_lung_fields": {"small_pulmonary_nodules": 5, "shadows_of_pulmonary_nodules": 8, "tuberculosis": 5,
                             "pulmonary_fibrosis": 15},
    "increased_lung_patterns": {"increased_lung_streak": 24, "lung_field_infiltration": 85, "obvious_hilar": 45},
    "spinal_lesions": {"degenerative_joint_disease_of_the_thoracic_spine": 76, "scoliosis": 75},
    "intercostal_pleural_thickening": {"intercostal_pleural_thickening": 36},
    "cardiac_hypertrophy": {"cardiac_hypertrophy": 42},
    "heart_pacemaker_placement": {"heart_pacemaker_placement": 7},
}
STUDY_IMAGES = STUDY_NORMAL_IMAGES + sum(sum(subs.values()) for subs in STUDY_TABLE.values())  # 1,924
# Finding category -> (share of all images in the study, each sub-category's share within the category).
HOSPITAL_CATEGORIES: dict[str, tuple[float, dict[str, float]]] = {
    category: (sum(subs.values()) / STUDY_IMAGES, {name: count / sum(subs.values()) for name, count in subs.items()})
    for category, subs in STUDY_TABLE.items()}
# NIH ChestX-ray14 image counts per finding (Data_Entry_2017_v2020.csv, 112,120 images).
NIH_COUNTS = {"Infiltration": 19894, "Effusion": 13317, "Atelectasis": 11559, "Nodule": 6331, "Mass": 5782,
              "Pneumothorax": 5302, "Consolidation": 4667, "Pleural_Thickening": 3385, "Cardiomegaly": 2776,
              "Emphysema": 2516, "Edema": 2303, "Fibrosis": 1686, "Pneumonia": 1431, "Hernia": 227}


@dataclass(frozen=True)
class LabelModel:
    """Which findings an image gets: normal or not, then 1-3 categories drawn by weight."""

    normal_fraction: float
    weights: dict[str, float]                      # category -> relative frequency among findings
    findings_per_image: tuple[float, float, float]  # P(1), P(2), P(3) for an abnormal image

    def sample(self, rng: np.random.Generator) -> list[str]:
        if rng.random() < self.normal_fraction:
            return []
        names = list(self.weights)
        p = np.array([self.weights[name] for name in names])
        count = int(rng.choice([1, 2, 3], p=self.findings_per_image))
        return [names[i] for i in sorted(rng.choice(len(names), size=count, replace=False, p=p / p.sum()))]


def label_model(dataset_format: str, prevalence: str) -> LabelModel:
    """"study": hospital images get one category each, drawn with the table's frequencies (as in the study);
    NIH images NIH's own mix. "study-multilabel" (hospital): the study's normal share, then 1-3 findings
    weighted as the table, so finding prevalences are ~1.4x the table's. "balanced": see the module text."""
    check_choice("prevalence", prevalence, PREVALENCES)
    names = list(HOSPITAL_CATEGORIES) if dataset_format == "hospital" else list(NIH_COUNTS)
    if prevalence == "balanced":
        return LabelModel(0.3, {name: 1.0 for name in names}, (0.6, 0.3, 0.1))
    if dataset_format == "hospital":
        weights = {name: HOSPITAL_CATEGORIES[name][0] for name in names}
        per_image = (1.0, 0.0, 0.0) if prevalence == "study" else (0.68, 0.23, 0.09)
        return LabelModel(STUDY_NORMAL_IMAGES / STUDY_IMAGES, weights, per_image)
    if prevalence == "study-multilabel":
        raise DataError("prevalence study-multilabel is for the hospital format; NIH's 'study' is multi-label already")
    return LabelModel(60361 / 112120, {name: float(NIH_COUNTS[name]) for name in names}, (0.6, 0.25, 0.15))


def hospital_subcategories(categories: list[str], rng: np.random.Generator) -> list[str]:
    """One sub-category per drawn category, by its share in the study's table ([] for a normal image)."""
    chosen = []
    for category in categories:
        shares = HOSPITAL_CATEGORIES[category][1]
        names = list(shares)
        chosen.append(names[rng.choice(len(names), p=np.array(list(shares.values())))])
    return chosen


def check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise DataError(f"{name} must be one of {', '.join(accepted)}; got {value!r}")
