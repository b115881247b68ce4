"""Synthetic radiographs: determinism, prevalence, finding signatures, DICOM realism, NIH layout."""
from __future__ import annotations

import csv
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from data.errors import DataError
from data.synthetic.dicom import Patient, Study, radiograph_dataset, write_dicom
from data.synthetic.findings import SIGNATURES
from data.synthetic.findings_nih import NIH_SIGNATURES
from data.synthetic.findings_study import STUDY_SIGNATURES
from data.synthetic.folders import NIH_HEADER, hospital_label_texts, write_hospital, write_nih
from data.synthetic.prevalence import HOSPITAL_CATEGORIES, NIH_COUNTS, STUDY_TABLE, label_model
from data.synthetic.render import draw_chest, lung_fields, render_chest

TAXONOMIES = Path(__file__).resolve().parents[1] / "data" / "taxonomies"
SMALL = {"n_images": 14, "image_size": 64}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("hospital")
    return out, write_hospital(out, seed=3, n_duplicates=2, **SMALL)


@pytest.fixture(scope="module")
def nih(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("nih")
    return out, write_nih(out, seed=3, **SMALL)


def file_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def displayed(ds) -> np.ndarray:
    """What a correct reader shows: modality LUT, window, MONOCHROME1 inverted once; in [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    top = 2.0 ** ds.BitsStored - 1  # pydicom's window output range: stored range through the rescale
    low, high = float(ds.RescaleIntercept), float(ds.RescaleSlope) * top + float(ds.RescaleIntercept)
    image = (values - low) / (high - low)
    return 1.0 - image if ds.PhotometricInterpretation == "MONOCHROME1" else image


# --- determinism --------------------------------------------------------------------------------

def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path, hospital, nih):
    again_h, again_n = tmp_path / "h", tmp_path / "n"
    write_hospital(again_h, seed=3, n_duplicates=2, **SMALL)
    write_nih(again_n, seed=3, **SMALL)
    assert file_digests(again_h) == file_digests(hospital[0])
    assert file_digests(again_n) == file_digests(nih[0])

    other = tmp_path / "other"
    write_nih(other, seed=4, **SMALL)
    theirs = np.asarray(Image.open(other / "images" / "00000001_000.png"), dtype=int)
    ours = np.asarray(Image.open(nih[0] / "images" / "00000001_000.png"), dtype=int)
    assert np.abs(theirs - ours).mean() > 1.0


# --- labels and prevalence ----------------------------------------------------------------------

def test_generator_categories_are_the_study_taxonomy():
    study = yaml.safe_load((TAXONOMIES / "study.yaml").read_text())
    assert {name: subs for name, subs in study["categories"].items()} == {
        "normal": ["normal"], **{name: list(shares) for name, (_, shares) in HOSPITAL_CATEGORIES.items()}}
    assert set(STUDY_SIGNATURES) == {sub for subs in study["categories"].values() for sub in subs} - {"normal"}
    nih = yaml.safe_load((TAXONOMIES / "nih.yaml").read_text())
    assert set(nih["categories"]) == set(NIH_COUNTS) == set(NIH_SIGNATURES)


def sampled_shares(dataset_format: str, prevalence: str, n: int = 6000) -> tuple[float, dict[str, float]]:
    model, rng = label_model(dataset_format, prevalence), np.random.default_rng(0)
    samples = [model.sample(rng) for _ in range(n)]
    shares = {name: sum(name in s for s in samples) / n for name in model.weights}
    return sum(not s for s in samples) / n, shares


def test_study_prevalence_is_imbalanced_like_the_hospital_set():
    normal, shares = sampled_shares("hospital", "study")
    assert normal == pytest.approx(1314 / 1924, abs=0.02)
    assert 0.0 < shares["heart_pacemaker_placement"] < 0.01  # the rarest category: well under 1%
    assert set(sorted(shares, key=shares.get)[-2:]) == {"increased_lung_patterns", "spinal_lesions"}  # 154, 151
    for name, (target, _) in HOSPITAL_CATEGORIES.items():
        assert shares[name] == pytest.approx(target, rel=0.2, abs=0.002), name
    model, rng = label_model("hospital", "study"), np.random.default_rng(1)
    assert {len(model.sample(rng)) for _ in range(2000)} == {0, 1}  # one category per image, as in the study
    _, multi = sampled_shares("hospital", "study-multilabel")
    assert multi["aortic_calcification"] > 1.2 * HOSPITAL_CATEGORIES["aortic_calcification"][0]


def test_a_study_sized_synthetic_set_parses_into_the_studys_table():
    """1,924 images at study prevalence, labels written in the study's own spellings (random case and
    separators), parse into the 9 categories with the table's counts within sampling error.

    Sampling error: a count of a category with share p is binomial (sd sqrt(n p (1 - p))), inflated because
    a patient's 1-3 images share their findings (design effect E[k^2] / E[k] = 2.4 / 1.4 = 1.71); every
    count must lie within 4 such sd of the table's (a 1-in-16,000 miss per count if the sampler is right)."""
    from data.labels import encode_labels, load_taxonomy

    texts = hospital_label_texts(1924, seed=0)
    rng = np.random.default_rng(0)
    styles = [str.upper, str.title, lambda t: t.replace("_", " "), lambda t: t.replace("_", "-").title(), str]
    spelled = pd.Series(["|".join(styles[rng.integers(len(styles))](name) for name in text.split("|"))
                         for text in texts])
    encoded = encode_labels(spelled, load_taxonomy("study"), where="synthetic")
    assert len(encoded) == 1924 and (encoded.sum(axis=1) == 1).all()
    table = {"normal": {"normal": 1314}, **STUDY_TABLE}
    names = pd.Series([name for text in texts for name in text.split("|")]).value_counts()

    def within_sampling_error(count, expected):
        share = expected / 1924
        return abs(int(count) - expected) <= 4 * np.sqrt(1924 * share * (1 - share) * 2.4 / 1.4)

    for category, subs in table.items():
        assert within_sampling_error(encoded[category].sum(), sum(subs.values())), (category, encoded[category].sum())
        for name, expected in subs.items():
            assert within_sampling_error(names.get(name, 0), expected), (name, names.get(name, 0))


def test_the_fast_label_sampler_is_what_write_hospital_writes(hospital):
    out, summary = hospital
    labels = pd.read_csv(out / "labels.csv")["labels"].tolist()[:summary["n_images"]]
    assert labels == hospital_label_texts(summary["n_images"], seed=3)


def test_nih_study_prevalence_follows_nih_counts():
    normal, shares = sampled_shares("nih", "study")
    assert normal == pytest.approx(60361 / 112120, abs=0.03)
    assert max(shares, key=shares.get) == "Infiltration" and min(shares, key=shares.get) == "Hernia"


@pytest.mark.parametrize("dataset_format", ["hospital", "nih"])
def test_balanced_prevalence_gives_every_category_many_positives(dataset_format):
    normal, shares = sampled_shares(dataset_format, "balanced")
    assert normal == pytest.approx(0.3, abs=0.03)
    assert min(shares.values()) > 0.6 * max(shares.values())


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="prevalence must be one of study, balanced, study-multilabel"):
        write_hospital(tmp_path / "x", n_images=2, prevalence="uniform")
    with pytest.raises(DataError, match="n_duplicates must be an integer >= 0"):
        write_hospital(tmp_path / "x", n_images=2, n_duplicates=-1)
    with pytest.raises(DataError, match="n_images must be >= 2 for the NIH layout"):
        write_nih(tmp_path / "x", n_images=1)
    with pytest.raises(DataError, match="test_fraction must be between 0 and 1"):
        write_nih(tmp_path / "x", n_images=2, test_fraction=1.0)
    assert not (tmp_path / "x").exists()


def test_refuses_bad_sizes_and_foreign_non_empty_folders(tmp_path):
    with pytest.raises(DataError, match="n_images must be an integer >= 1"):
        write_nih(tmp_path / "a", n_images=0)
    with pytest.raises(DataError, match="image_size must be an integer >= 32"):
        write_nih(tmp_path / "a", n_images=2, image_size=16)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    # A real hospital folder has a labels.csv too: the name alone must never allow an overwrite.
    (tmp_path / "mine" / "labels.csv").write_text("image,labels\nnotes.txt,normal\n")
    for writer in (write_nih, write_hospital):
        with pytest.raises(DataError, match="is not empty"):
            writer(tmp_path / "mine", n_images=2, image_size=32, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- finding signatures ---------------------------------------------------------------------------

ax = (np.arange(32) + 0.5) / 32 * 2 - 1
X, Y = np.meshgrid(ax, ax)  # normalised coordinates at 32 px: x = +1 is the image's right (patient's left)
MIDLINE = np.abs(X) < 0.22
LUNGS = "lungs"  # the patient's own lung fields, grown by one 32-px pixel (downsizing blurs edges)
# Where at least `share` of each finding's change must fall (default: inside the lungs).
WHERE = {
    "aortic_knob_calcification": ((np.abs(X - 0.1) < 0.3) & (Y > -0.7) & (Y < -0.15), 0.9),
    "aortic_arch_calcification": ((np.abs(X - 0.1) < 0.3) & (Y > -0.7) & (Y < -0.15), 0.9),
    "aortic_tortuosity": ((X > 0) & (X < 0.55) & (Y > -0.65) & (Y < 0.2), 0.8),
    "aortic_elongation": ((X > 0) & (X < 0.55) & (Y > -0.75) & (Y < 0.2), 0.8),
    "cardiomegaly": ((Y > -0.15) & (Y < 0.75), 0.9),
    "left_ventricular_hypertrophy": ((X > 0.1) & (Y > -0.15) & (Y < 0.75), 0.85),
    "pacemaker": ((X > -0.3) & (Y < 0.5), 0.95),
    "scoliosis": (np.abs(X) < 0.4, 0.4),  # the ribs follow the spine, so part of the change is lateral
    "degenerative_spine": (MIDLINE, 0.85),
    "compression_fracture": (MIDLINE, 0.85),
    "Hernia": (np.abs(X) < 0.3, 0.85),
    "apical_cap": (Y < -0.35, 0.9),
    "aortic_wall_calcification": ((X > -0.05) & (X < 0.4) & (Y > -0.6) & (Y < 0.6), 0.85),
    "Emphysema": (np.ones_like(X, dtype=bool), 1.0),
}


def grown_lungs(seed: int) -> np.ndarray:
    lungs = lung_fields(draw_chest(np.random.default_rng(seed)), image_size=32) > 0.5
    grown = lungs.copy()
    for axis in (0, 1):
        for step in (-1, 1):
            grown |= np.roll(lungs, step, axis=axis)
    return grown


# Drawings by name (hospital lower case, NIH capitalised), and the three drawn only for study sub-categories.
ALL_SIGNATURES = {**SIGNATURES, **NIH_SIGNATURES,
                  **{name: STUDY_SIGNATURES[name]
                     for name in ("aortic_wall_calcification", "obvious_hilar", "tuberculosis")}}


def downsized_change(name: str, seed: int) -> np.ndarray:
    """Rendering at 128 px with and without the finding (same patient, same noise), shrunk to 32 px."""
    def render(signatures):
        rng = np.random.default_rng(seed)
        image = render_chest(draw_chest(rng), signatures, image_size=128, rng=np.random.default_rng([seed, 1]))
        return image.reshape(32, 4, 32, 4).mean(axis=(1, 3))
    return render([ALL_SIGNATURES[name]]) - render([])


@pytest.mark.parametrize("name", sorted(ALL_SIGNATURES))
def test_each_finding_shows_at_32_px_where_it_should(name):
    region, share = WHERE.get(name, (LUNGS, 0.9))
    for seed in range(4):
        change = np.abs(downsized_change(name, seed))
        mask = grown_lungs(seed) if region is LUNGS else region
        assert change.max() > 0.08, f"{name} (seed {seed}) changes no 32-px pixel by more than 0.08"
        inside = change[mask].sum() / change.sum()
        assert inside >= share, f"{name} (seed {seed}): {inside:.2f} of the change in its region, want {share}"


def test_opacities_brighten_and_emphysema_darkens():
    for name in ("nodule", "mass", "pacemaker", "aortic_knob_calcification", "pleural_thickening", "Effusion"):
        assert downsized_change(name, 0).sum() > 0, name
    assert downsized_change("Emphysema", 0).sum() < 0


def test_enlarged_heart_moves_the_left_heart_border_outwards():
    # Beside the heart, the bright (non-lung) span at the image's right grows.
    for name in ("cardiomegaly", "left_ventricular_hypertrophy"):
        change = downsized_change(name, 1)
        assert change[(X > 0.25) & (Y > 0.05) & (Y < 0.5)].mean() > 0.03, name


# --- DICOM realism --------------------------------------------------------------------------------

# Seeds 0-9 cover MONOCHROME1/2, 12/14/16 bits, one or two windows and all three transfer syntaxes.
@pytest.mark.parametrize("seed", range(10))
def test_dicom_reads_back_as_the_rendering_whatever_the_encoding(tmp_path, seed):
    from pydicom import dcmread

    rng = np.random.default_rng(seed)
    image = render_chest(draw_chest(rng), [], image_size=64, rng=rng)
    patient = Patient("SYN1", "DOE^JO", "F", 1950)
    study = Study("1.2.3", "1.2.3.4", "A1", "20200101", "PA")
    ds = radiograph_dataset(image, patient=patient, study=study, sop_uid="1.2.3.4.5", instance=1, rng=rng)
    syntax = ("explicit", "implicit", "rle")[seed % 3]
    write_dicom(ds, tmp_path / "x.dcm", syntax)
    back = dcmread(tmp_path / "x.dcm")
    assert back.BitsStored in (12, 14, 16) and "WindowCenter" in back and "RescaleSlope" in back
    np.testing.assert_allclose(displayed(back), image, atol=2e-3)
    from data.dicom import read_radiograph  # the project's reader agrees

    np.testing.assert_allclose(read_radiograph(tmp_path / "x.dcm")[0], image, atol=2e-3)


def test_monochrome1_files_store_the_inverse_and_display_the_same(hospital):
    from pydicom import dcmread

    out, summary = hospital
    photometrics = {}
    for path in sorted(out.rglob("*.dcm")):
        ds = dcmread(path)
        if ds.Modality in ("CR", "DX") and ds.Rows >= 64:
            photometrics.setdefault(ds.PhotometricInterpretation, []).append(ds)
    assert set(photometrics) == {"MONOCHROME1", "MONOCHROME2"}
    for ds in photometrics["MONOCHROME1"]:
        stored, shown = ds.pixel_array.astype(float), displayed(ds)
        assert np.corrcoef(stored.ravel(), shown.ravel())[0, 1] < -0.99  # stored inverted
        corner = shown[:3, :3].mean()  # air beside the neck: dark on screen, bright in storage
        assert corner < 0.15 and shown.mean() > corner + 0.2
        if ds.get("PresentationLUTShape"):
            assert ds.PresentationLUTShape == "INVERSE"


def test_hospital_files_look_like_a_hospital_export(hospital):
    from pydicom import dcmread
    from pydicom.uid import UID

    out, summary = hospital
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns) == ["image", "labels", "patient_id"]
    assert summary["n_files"] == len(labels) == SMALL["n_images"] + 2 + 2  # + duplicates + outliers
    assert sorted(labels["image"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm"))
    assert all(image.count("/") >= 2 for image in labels["image"])  # in subfolders
    names = {sub for text in labels["labels"] for sub in text.split("|")}
    study = yaml.safe_load((TAXONOMIES / "study.yaml").read_text())
    assert names <= {sub for subs in study["categories"].values() for sub in subs} | {"normal"}
    assert labels["patient_id"].value_counts().max() >= 2  # several images for some patients

    syntaxes, modalities, sizes, windows = set(), set(), set(), set()
    for image in labels["image"]:
        raw = (out / image).read_bytes()
        assert raw[128:132] == b"DICM"  # preamble + file meta header
        ds = dcmread(out / image)
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        modalities.add(ds.Modality)
        sizes.add(min(ds.Rows, ds.Columns))
        windows.add(ds["WindowCenter"].VM)
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
        assert "^" in str(ds.PatientName) and ds.PatientID == labels.set_index("image").loc[image, "patient_id"]
    assert {"CR", "DX", "CT"} <= modalities and min(sizes) < 32
    assert len(syntaxes) >= 2 and windows == {1, 2}  # some files offer a second window
    assert sorted(summary["outliers"].values())[0] == "CT slice"


def test_duplicates_have_the_same_pixels_as_their_originals(hospital):
    from pydicom import dcmread

    out, summary = hospital
    assert len(summary["duplicates"]) == 2
    for copy, original in summary["duplicates"].items():
        a, b = dcmread(out / copy), dcmread(out / original)
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    renamed = [copy for copy, original in summary["duplicates"].items()
               if dcmread(out / copy).SOPInstanceUID != dcmread(out / original).SOPInstanceUID]
    assert len(renamed) == 1  # one byte copy, one re-encoded under a new SOPInstanceUID


def test_prepare_accepts_the_radiographs_rejects_outliers_and_reports_duplicates(hospital, tmp_path):
    from data.prepare import prepare_hospital

    out, summary = hospital
    prepared = prepare_hospital(out, out / "labels.csv", tmp_path / "prepared", image_size=32, workers=1,
                                min_side_px=32, salt="test", progress=False)
    assert prepared["counts"] == {"input": summary["n_files"], "accepted": SMALL["n_images"], "rejected": 2,
                                  "duplicate": 2}
    rejects = pd.read_csv(tmp_path / "prepared" / "rejects.csv").set_index("source_path")["reason"]
    assert set(rejects.index) == set(summary["outliers"])
    assert set(pd.read_csv(tmp_path / "prepared" / "duplicates.csv")["source_path"]) == set(summary["duplicates"])


# --- NIH layout -----------------------------------------------------------------------------------

def test_nih_table_has_nih_header_and_parses(nih, shared_data):
    out, summary = nih
    raw = (out / "Data_Entry_2017.csv").read_bytes()
    assert raw.split(b"\r\n")[0].decode() == NIH_HEADER
    with gzip.open(shared_data / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt") as real:
        assert NIH_HEADER == real.readline().rstrip("\r\n") + ","  # the 2017 file adds a trailing comma
    rows = list(csv.reader(raw.decode().splitlines()))
    assert all(len(row) == 11 for row in rows[1:])  # Width,Height and x,y unquoted, like NIH's
    table = pd.read_csv(out / "Data_Entry_2017.csv")
    assert len(table) == SMALL["n_images"]
    assert (table["Image Index"] == [f"{p:08d}_{f:03d}.png" for p, f in
                                     zip(table["Patient ID"], table["Follow-up #"])]).all()
    findings = {name for text in table["Finding Labels"] for name in text.split("|")}
    assert findings <= set(NIH_COUNTS) | {"No Finding"}
    assert sorted(p.name for p in (out / "images").glob("*.png")) == sorted(table["Image Index"])


def test_nih_table_reads_with_the_projects_nih_reader(nih):
    from data.nih import read_labels

    table = read_labels(nih[0] / "Data_Entry_2017.csv")
    assert len(table) == SMALL["n_images"]


def test_nih_split_lists_are_patient_disjoint_and_complete(nih):
    out, summary = nih
    lists = {}
    for name in ("train_val_list.txt", "test_list.txt"):
        text = (out / name).read_text()
        assert not text.endswith("\n")  # like NIH's lists
        lists[name] = text.split("\n")
    train, test = lists["train_val_list.txt"], lists["test_list.txt"]
    assert sorted(train + test) == sorted(p.name for p in (out / "images").glob("*.png"))
    patients = {name: {image.split("_")[0] for image in images} for name, images in lists.items()}
    assert test and not (patients["train_val_list.txt"] & patients["test_list.txt"])
    assert summary["n_test_images"] == len(test)


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_writes_both_formats_and_reports_errors_in_one_line(tmp_path, capsys):
    from search.cli import main

    assert main(["synth", "--format", "nih", "--out", str(tmp_path / "n"), "--n-images", "3",
                 "--image-size", "32", "--seed", "1", "--prevalence", "balanced"]) == 0
    assert "3 distinct radiographs" in capsys.readouterr().out
    assert main(["synth", "--format", "hospital", "--out", str(tmp_path / "h"), "--n-images", "3",
                 "--image-size", "32"]) == 0
    assert (tmp_path / "h" / "labels.csv").is_file()
    assert main(["synth", "--format", "hospital", "--out", str(tmp_path / "h"), "--n-images", "3"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["synth", "--format", "hospital", "--out", str(tmp_path / "h"), "--n-images", "3",
                 "--image-size", "32", "--overwrite"]) == 0


# --- learnability ---------------------------------------------------------------------------------

def test_nih_findings_share_the_hospital_signatures():
    # What makes pretraining on the NIH-style set useful for the hospital one.
    shared = {"Cardiomegaly": "cardiomegaly", "Nodule": "nodule", "Mass": "mass", "Fibrosis": "fibrotic_streak",
              "Pleural_Thickening": "pleural_thickening"}
    for nih_name, hospital_name in shared.items():
        assert NIH_SIGNATURES[nih_name] is SIGNATURES[hospital_name]
    assert NIH_SIGNATURES["Edema"].adjust is SIGNATURES["increased_lung_markings"].adjust


def test_categories_are_learnable_from_32_px_pixels_by_a_linear_model():
    """A stand-in for the CNN learning test: logistic regression on raw 32-px pixels, 240 images.

    A CNN sees more (a nodule anywhere, a curve of either sign); if even a linear model beats chance
    clearly on most categories, the signatures survive the shrink to 32 px.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from data.synthetic.prevalence import hospital_subcategories

    model, categories = label_model("hospital", "balanced"), list(HOSPITAL_CATEGORIES)
    pixels, labels = [], []
    for index in range(240):
        rng = np.random.default_rng([11, index])
        chest, drawn = draw_chest(rng), model.sample(rng)
        signatures = [STUDY_SIGNATURES[name] for name in hospital_subcategories(drawn, rng)]
        image = render_chest(chest, signatures, image_size=64, rng=rng).reshape(32, 2, 32, 2).mean(axis=(1, 3))
        pixels.append(image.ravel())
        labels.append([category in drawn for category in categories])
    pixels, labels = np.array(pixels), np.array(labels, dtype=int)
    train, test = slice(0, 160), slice(160, 240)
    aucs = {}
    for column, category in enumerate(categories):
        classifier = LogisticRegression(C=0.05, max_iter=3000).fit(pixels[train], labels[train, column])
        aucs[category] = roc_auc_score(labels[test, column], classifier.decision_function(pixels[test]))
    # Seen: mean 0.80; above 0.75 for calcification, curvature, lung pattern, hypertrophy, pacemaker.
    assert np.mean(list(aucs.values())) > 0.72, aucs
    assert sum(auc > 0.75 for auc in aucs.values()) >= 4, aucs


def test_prepare_accepts_every_nih_style_image_with_its_split(nih, tmp_path):
    from data.prepare import prepare_nih

    out, summary = nih
    prepared = prepare_nih(out, out / "Data_Entry_2017.csv", tmp_path / "prepared", image_size=32, workers=1,
                           salt="test", progress=False)
    assert prepared["counts"] == {"input": SMALL["n_images"], "accepted": SMALL["n_images"], "rejected": 0,
                                  "duplicate": 0}
    manifest = pd.read_csv(tmp_path / "prepared" / "manifest.csv")
    assert (manifest["split"] == "test").sum() == summary["n_test_images"]
