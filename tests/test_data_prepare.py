"""data.prepare end to end: real and synthetic folders, restarts, parallel workers, privacy, bad input."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import pydicom_testdata
from data import batch_conversion, load_prepared
from data.errors import DataError
from data.labels import encode_labels, load_taxonomy
from data.prepare import prepare_hospital, prepare_nih

SALT = "test-salt"
REAL_CONVERT_ONE = batch_conversion.convert_one


def convert_unless_six_images_exist(task, settings, images_dir):
    """A pool worker that dies once 6 PNGs exist (module level, so a forked worker can unpickle it)."""
    if len(list(Path(images_dir).glob("*.png"))) >= 6:
        raise RuntimeError("worker died")
    return REAL_CONVERT_ONE(task, settings, images_dir)


def convert_five_then_fail(task, settings, images_dir):
    """A conversion that raises on its sixth call (counted in a file: it runs in a worker process)."""
    counter = Path(images_dir).parent / "calls.txt"
    if counter.is_file() and len(counter.read_text().splitlines()) == 5:
        raise RuntimeError("worker killed")
    with counter.open("a") as stream:
        stream.write(task.source_path + "\n")
    return REAL_CONVERT_ONE(task, settings, images_dir)


def text_outputs(out_dir: Path) -> str:
    """Every text file prepare wrote (the restart record included), and every file name, as one string."""
    names = [str(path.relative_to(out_dir)) for path in out_dir.rglob("*")]
    texts = [path.read_text() for path in out_dir.rglob("*") if path.is_file() and path.suffix != ".png"]
    return "\n".join(names + texts)


def progress_lines(out_dir: Path) -> int:
    return len((out_dir / batch_conversion.PROGRESS_FILE).read_text().splitlines()) - 1  # minus the settings line


@pytest.fixture(scope="module")
def synthetic_hospital(tmp_path_factory) -> Path:
    from data.synthetic import write_hospital

    folder = tmp_path_factory.mktemp("synthetic") / "hospital"
    write_hospital(folder, n_images=16, seed=5, image_size=64, prevalence="balanced")
    return folder


def test_real_folder_every_file_accepted_rejected_or_duplicate(shared_data, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(shared_data / "dicom", folder / "shared")
    (folder / "extra").mkdir()
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm"):
        shutil.copy(pydicom_testdata(name), folder / "extra" / name)
    raw = (shared_data / "dicom" / "highdicom_dx_image.dcm").read_bytes()
    (folder / "extra" / "truncated.dcm").write_bytes(raw[: len(raw) // 2])
    (folder / "extra" / "README.txt").write_text("export notes\n")
    labelled = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
                      and path.name != "README.txt")
    finding = "Tuberculosis|heart pacemaker placement"  # the study's spelling
    labels = pd.DataFrame({"image": labelled, "labels": [finding if "ModalitySequence" in name else "normal"
                                                         for name in labelled]})
    labels.to_csv(tmp_path / "labels.csv", index=False)

    summary = prepare_hospital(folder, tmp_path / "labels.csv", tmp_path / "out", image_size=64, salt=SALT,
                               workers=2, progress=False)
    counts = summary["counts"]
    assert counts == {"input": 11, "accepted": 5, "rejected": 5, "duplicate": 1}
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv").set_index("source_path")["reason"]
    assert rejects["extra/MR_small.dcm"].startswith("modality MR not allowed")
    assert rejects["extra/SC_rgb.dcm"].startswith("colour image")
    assert rejects["extra/emri_small.dcm"].startswith("multi-frame")
    assert "truncated" in rejects["extra/truncated.dcm"] or "unreadable" in rejects["extra/truncated.dcm"]
    assert rejects["extra/README.txt"] == "not listed in the labels CSV"
    duplicates = pd.read_csv(tmp_path / "out" / "duplicates.csv")
    assert duplicates["source_path"].tolist() == ["extra/RG1_UNCR.dcm"]  # same pixels as RG1_J2KR, sorted first

    prepared = load_prepared(tmp_path / "out")
    manifest = prepared.manifest.set_index("source_path")
    assert manifest.loc["shared/CR-MONO1-10-chest.dcm", "image_id"] == "1.2.392.200036.9125.0.19950720112207"
    assert manifest.loc["shared/highdicom_dx_image.dcm", ["original_rows", "original_cols"]].tolist() == [169, 211]
    assert manifest.loc["shared/siim_chest_pa_jpeg_baseline.dcm", "pixel_spacing_row_mm"] == pytest.approx(0.168)
    assert manifest.loc["shared/CR-ModalitySequenceLUT.dcm", ["abnormal_lung_fields", "normal"]].tolist() == [1, 0]
    assert manifest["patient_key"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert all(path.is_file() for path in prepared.image_paths())
    assert prepared.labels().shape == (5, 9) and prepared.labels().dtype == np.uint8  # the study's 9 categories
    assert sorted(path.name for path in (tmp_path / "out" / "images").iterdir()) == \
        sorted(Path(path).name for path in prepared.manifest["image_path"])


def test_any_modality_still_rejects_extreme_aspect_ratio(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(pydicom_testdata("JPEG-LL.dcm"), folder / "nm.dcm")  # NM, 1024 x 256
    shutil.copy(pydicom_testdata("MR_small.dcm"), folder / "mr.dcm")  # MR, 64 x 64
    (folder / "labels.csv").write_text("image,labels,patient_id\nnm.dcm,normal,1\nmr.dcm,normal,2\n")
    summary = prepare_hospital(folder, folder / "labels.csv", tmp_path / "out", image_size=64, salt=SALT,
                               allowed_modalities=None, workers=1, progress=False)
    assert summary["counts"] == {"input": 2, "accepted": 1, "rejected": 1, "duplicate": 0}
    reason = pd.read_csv(tmp_path / "out" / "rejects.csv")["reason"][0]
    assert reason.startswith("extreme aspect ratio 4.00")


def test_a_malformed_file_is_rejected_and_the_run_goes_on(shared_data, tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "dicom" / "highdicom_dx_image.dcm", folder / "good.dcm")
    broken = pydicom.dcmread(shared_data / "dicom" / "highdicom_dx_image.dcm")
    broken.SOPInstanceUID = "1.2.3.4"
    broken.ModalityLUTSequence = Sequence([Dataset()])  # an item without LUTDescriptor / LUTData
    broken.save_as(folder / "broken_lut.dcm")
    (folder / "labels.csv").write_text("image,labels\ngood.dcm,normal\nbroken_lut.dcm,normal\n")
    summary = prepare_hospital(folder, folder / "labels.csv", tmp_path / "out", image_size=32, salt=SALT,
                               workers=1, progress=False)
    assert summary["counts"] == {"input": 2, "accepted": 1, "rejected": 1, "duplicate": 0}
    assert pd.read_csv(tmp_path / "out" / "rejects.csv")["reason"][0].startswith("conversion failed (")


def test_synthetic_hospital_set_goes_through_prepare(synthetic_hospital, tmp_path):
    summary = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "out",
                               image_size=32, salt=SALT, workers=2, progress=False)
    counts = summary["counts"]
    assert counts["input"] == counts["accepted"] + counts["rejected"] + counts["duplicate"] == 19
    assert (counts["accepted"], counts["rejected"], counts["duplicate"]) == (16, 2, 1)
    assert set(summary["rejection_reasons"]) == {"modality CT not allowed", "too small"}
    prepared = load_prepared(tmp_path / "out")
    assert prepared.categories == summary["categories"] and len(prepared.manifest) == 16
    assert prepared.manifest["modality"].isin(["CR", "DX"]).all()
    labels = pd.read_csv(synthetic_hospital / "labels.csv", dtype=str)
    assert prepared.manifest["patient_key"].nunique() == labels.loc[
        labels["image"].isin(prepared.manifest["source_path"]), "patient_id"].nunique()


def test_no_patient_identifier_leaves_the_dicom_files(synthetic_hospital, tmp_path):
    import pydicom

    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "out", image_size=32,
                     salt=SALT, workers=1, progress=False)
    secrets = set(pd.read_csv(synthetic_hospital / "labels.csv", dtype=str)["patient_id"])
    for path in synthetic_hospital.rglob("*.dcm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True)
        secrets |= {str(header.PatientID), str(header.PatientName), str(header.get("PatientBirthDate", ""))}
    written = text_outputs(tmp_path / "out")
    leaked = sorted(secret for secret in secrets if secret and secret in written)
    assert not leaked
    assert SALT not in written


def test_salt_is_never_stored_beside_the_keys(synthetic_hospital, tmp_path, monkeypatch):
    monkeypatch.delenv("CXRTUNE_SALT", raising=False)
    summary = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "a",
                               image_size=32, workers=1, progress=False)
    salt_file = tmp_path / "a.patient-salt.SECRET"
    assert salt_file.is_file() and oct(salt_file.stat().st_mode & 0o777) == "0o600"
    salt = salt_file.read_text().strip()
    assert len(salt) == 64 and salt not in text_outputs(tmp_path / "a")
    assert summary["patient_key_salt"] == f"file {salt_file}"
    # The same salt, from the environment this time, gives the same keys.
    monkeypatch.setenv("CXRTUNE_SALT", salt)
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "b", image_size=32,
                     workers=1, progress=False)
    keys_a = load_prepared(tmp_path / "a").manifest["patient_key"]
    assert keys_a.tolist() == load_prepared(tmp_path / "b").manifest["patient_key"].tolist()
    keys_other = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "c",
                                  image_size=32, salt="another", workers=1, progress=False)
    assert keys_other and not set(keys_a) & set(load_prepared(tmp_path / "c").manifest["patient_key"])
    monkeypatch.delenv("CXRTUNE_SALT")
    with pytest.raises(DataError, match="inside the prepared folder"):
        prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "d", image_size=32,
                         salt_file=tmp_path / "d" / "salt", progress=False)


def test_interrupted_run_resumes_and_unchanged_input_converts_nothing(synthetic_hospital, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(batch_conversion, "convert_one", convert_five_then_fail)
    with pytest.raises(RuntimeError, match="worker killed"):
        prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                         workers=1, progress=False)
    monkeypatch.setattr(batch_conversion, "convert_one", REAL_CONVERT_ONE)
    (out / "calls.txt").unlink()
    assert progress_lines(out) == 5 and not (out / "manifest.csv").exists()
    assert not [path for path in (out / "images").iterdir() if path.name.startswith(".")]  # no torn PNG

    # Resume in parallel: only the 14 files not recorded are converted.
    summary = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                               workers=2, progress=False)
    assert progress_lines(out) == 19 and summary["counts"]["input"] == 19
    manifest_bytes = (out / "manifest.csv").read_bytes()
    pngs = {path.name: path.stat().st_mtime_ns for path in (out / "images").iterdir()}

    # Unchanged input: nothing converted, same outputs.
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                     workers=2, progress=False)
    assert progress_lines(out) == 19
    assert (out / "manifest.csv").read_bytes() == manifest_bytes
    assert {path.name: path.stat().st_mtime_ns for path in (out / "images").iterdir()} == pngs

    # A line torn by a kill in mid-write is ignored.
    with (out / batch_conversion.PROGRESS_FILE).open("a") as ledger:
        ledger.write('{"source_path": "2014/')
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                     workers=1, progress=False)
    assert (out / "manifest.csv").read_bytes() == manifest_bytes

    # A touched file (new mtime, same bytes) is not converted again; changed settings convert everything.
    touched = synthetic_hospital / pd.read_csv(out / "manifest.csv")["source_path"][0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1_000_000))
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                     workers=1, progress=False)
    assert progress_lines(out) == 20  # 19 + the torn line
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=48, salt=SALT,
                     workers=2, progress=False)
    assert progress_lines(out) == 19 and load_prepared(out).summary["image_size"] == 48


def test_a_second_prepare_on_the_same_folder_is_refused_while_the_first_runs(synthetic_hospital, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / batch_conversion.LOCK_FILE).write_text(str(holder.pid))
        with pytest.raises(DataError, match=f"another prepare \\(process {holder.pid}\\)"):
            prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                             workers=1, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and taken over; the lock is released at the end.
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                     workers=1, progress=False)
    assert not (out / batch_conversion.LOCK_FILE).exists() and (out / "manifest.csv").is_file()


def test_a_worker_dying_in_the_pool_keeps_finished_files(synthetic_hospital, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(batch_conversion, "convert_one", convert_unless_six_images_exist)
    with pytest.raises(RuntimeError, match="worker died"):
        prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                         workers=2, progress=False)
    monkeypatch.setattr(batch_conversion, "convert_one", REAL_CONVERT_ONE)
    recorded = progress_lines(out)
    assert 1 <= recorded < 19 and not (out / "manifest.csv").exists()
    prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32, salt=SALT,
                     workers=2, progress=False)
    assert progress_lines(out) == 19  # each remaining file recorded once; none of the first ones again


HELD_FILE = "hold-files.txt"  # in the output folder: the files a held conversion never finishes
HOLD_LIMIT_S = 300  # a held conversion gives up (the test then fails) if nobody kills its run by then


def convert_unless_held(task, settings, images_dir):
    """The real conversion, except for the files listed in HELD_FILE, which wait until their run is killed
    (module level, so a forkserver worker can unpickle it; a file, since such a worker sees no later env)."""
    import time

    held = Path(images_dir).parent / HELD_FILE
    if held.is_file() and task.source_path in held.read_text().split():
        time.sleep(HOLD_LIMIT_S)
        raise RuntimeError(f"{task.source_path} was held {HOLD_LIMIT_S} s and its run was never killed")
    return REAL_CONVERT_ONE(task, settings, images_dir)


def test_killed_cli_run_resumes_without_redoing_recorded_files(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        shutil.copy(pydicom_testdata("RG1_J2KR.dcm"), folder / f"copy{index}.dcm")
    (folder / "labels.csv").write_text("image,labels\n" + "".join(f"copy{i}.dcm,normal\n" for i in range(4)))
    out = tmp_path / "out"
    out.mkdir()
    (out / HELD_FILE).write_text("copy2.dcm copy3.dcm")  # the run records copy0 and copy1, then waits to be killed
    arguments = ["prepare", str(folder), "--out", str(out), "--image-size", "64", "--salt", SALT, "--workers", "2",
                 "--quiet"]
    held_run = ("import sys; from data import batch_conversion; from test_data_prepare import convert_unless_held; "
                "batch_conversion.convert_one = convert_unless_held; from search.cli import main; "
                "sys.exit(main(sys.argv[1:]))")
    tests_dir = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests_dir.parent), str(tests_dir)]))
    process = subprocess.Popen([sys.executable, "-c", held_run, *arguments], start_new_session=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / batch_conversion.PROGRESS_FILE).is_file() and progress_lines(out) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the held run ended before it was killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert progress_lines(out) == 2 and not (out / "manifest.csv").exists()

    (out / HELD_FILE).unlink()
    assert subprocess.run([sys.executable, "-m", "search.cli", *arguments], check=False).returncode == 0
    records = [json.loads(line) for line in (out / batch_conversion.PROGRESS_FILE).read_text().splitlines()[1:]
               if line.endswith("}")]
    sources = [record["source_path"] for record in records]
    assert sorted(sources) == [f"copy{i}.dcm" for i in range(4)]  # each file recorded once: none redone
    assert load_prepared(out).summary["counts"] == {"input": 4, "accepted": 1, "rejected": 0, "duplicate": 3}


def test_parallel_and_serial_runs_write_identical_outputs(synthetic_hospital, tmp_path):
    for workers, name in ((1, "serial"), (2, "parallel")):
        prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / name, image_size=32,
                         bit_depth=16, salt=SALT, workers=workers, progress=False)
    for file_name in ("manifest.csv", "rejects.csv", "duplicates.csv"):
        assert (tmp_path / "serial" / file_name).read_bytes() == (tmp_path / "parallel" / file_name).read_bytes()
    serial = sorted((tmp_path / "serial" / "images").iterdir())
    assert [path.read_bytes() for path in serial] == \
        [(tmp_path / "parallel" / "images" / path.name).read_bytes() for path in serial]
    from PIL import Image

    with Image.open(serial[0]) as image:
        assert image.mode.startswith("I;16") and image.size == (32, 32)


def test_rare_categories_are_dropped_from_manifest_and_reported(synthetic_hospital, tmp_path):
    full = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "full", image_size=32,
                            salt=SALT, workers=1, progress=False)
    threshold = sorted(set(full["category_counts"].values()))[1]
    summary = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", tmp_path / "some",
                               image_size=32, salt=SALT, workers=1, progress=False, min_category_images=threshold)
    expected_dropped = {name: count for name, count in full["category_counts"].items() if count < threshold}
    assert summary["dropped_categories"] == expected_dropped and expected_dropped
    prepared = load_prepared(tmp_path / "some")
    assert not set(expected_dropped) & set(prepared.manifest.columns)
    assert summary["counts"]["accepted"] == full["counts"]["accepted"]  # images are kept


def test_the_studys_least_class_drop_leaves_8_hospital_categories(synthetic_hospital, tmp_path):
    from search.cli import main

    code = main(["prepare", str(synthetic_hospital), "--out", str(tmp_path / "out"), "--image-size", "32",
                 "--salt", SALT, "--workers", "1", "--quiet", "--drop-least-class"])
    prepared = load_prepared(tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    labels = pd.read_csv(synthetic_hospital / "labels.csv")
    assert code == 0 and len(load_taxonomy("study").categories) == 9 and len(prepared.categories) == 8
    least = summary["least_class_dropped"]
    encoded = encode_labels(labels["labels"], load_taxonomy("study"), where="x")[:16]  # the 16 distinct images
    assert least not in prepared.categories and summary["dropped_categories"] == {least: int(encoded[least].sum())}
    assert int(encoded[least].sum()) == int(encoded.sum().min())
    assert summary["counts"]["accepted"] == 16 and prepared.labels().shape == (16, 8)


def bad_hospital_inputs(tmp_path: Path, synthetic_hospital: Path) -> dict[str, tuple[Path, Path, str]]:
    labels = pd.read_csv(synthetic_hospital / "labels.csv", dtype=str)
    cases = {}

    def case(name, csv_text, message, folder=synthetic_hospital):
        path = tmp_path / f"{name}.csv"
        if csv_text is not None:
            path.write_bytes(csv_text if isinstance(csv_text, bytes) else csv_text.encode())
        cases[name] = (folder, path, message)

    case("missing_column", labels.drop(columns=["labels"]).to_csv(index=False), "lacks column")
    case("unreadable", b"\x00\x01\x02\xff\xfe", "cannot be read|lacks column")
    case("missing_images", labels.assign(image="nowhere/" + labels["image"]).to_csv(index=False), "not found under")
    case("unknown_label", labels.assign(labels="banana").to_csv(index=False), "not in taxonomy 'study': banana")
    (tmp_path / "empty").mkdir()
    case("empty_folder", labels.to_csv(index=False), "holds no files", folder=tmp_path / "empty")
    case("no_csv", None, "does not exist")
    return cases


def test_bad_input_raises_one_clear_error_and_writes_nothing(synthetic_hospital, tmp_path, monkeypatch):
    monkeypatch.delenv("CXRTUNE_SALT", raising=False)
    for name, (folder, labels_csv, message) in bad_hospital_inputs(tmp_path, synthetic_hospital).items():
        out = tmp_path / f"out_{name}"
        with pytest.raises(DataError, match=message):
            prepare_hospital(folder, labels_csv, out, image_size=32, progress=False)
        assert not out.exists() and not Path(f"{out}.patient-salt.SECRET").exists(), name


def test_cli_prints_one_line_and_exits_2_on_bad_input(synthetic_hospital, tmp_path, capsys):
    from search.cli import main

    labels = pd.read_csv(synthetic_hospital / "labels.csv", dtype=str)
    labels.assign(labels="kiwi").to_csv(tmp_path / "labels.csv", index=False)
    code = main(["prepare", str(synthetic_hospital), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "out"), "--salt", SALT])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "kiwi" in error and "accepted:" in error
    code = main(["prepare", str(synthetic_hospital), "--out", str(tmp_path / "ok"), "--image-size", "32",
                 "--salt", SALT, "--workers", "1", "--quiet"])
    assert code == 0 and load_prepared(tmp_path / "ok").summary["counts"]["accepted"] == 16
    code = main(["prepare", str(synthetic_hospital), "--out", str(tmp_path / "ct"), "--image-size", "32",
                 "--salt", SALT, "--workers", "1", "--quiet", "--allow-modality", "ct"])
    summary = load_prepared(tmp_path / "ct").summary
    assert code == 0 and summary["counts"]["accepted"] == 17 and "CT" in summary["allowed_modalities"]


def test_output_and_salt_file_inside_the_input_folder_are_not_inputs(synthetic_hospital, tmp_path, monkeypatch):
    monkeypatch.delenv("CXRTUNE_SALT", raising=False)
    folder = tmp_path / "hospital"
    shutil.copytree(synthetic_hospital, folder)
    first = prepare_hospital(folder, folder / "labels.csv", folder / "prepared", image_size=32, workers=1,
                             progress=False)
    assert (folder / "prepared.patient-salt.SECRET").is_file()
    again = prepare_hospital(folder, folder / "labels.csv", folder / "prepared", image_size=32, workers=1,
                             progress=False)
    assert first["counts"] == again["counts"] and again["counts"]["input"] == 19


def write_nih_folder(root: Path) -> Path:
    """NIH layout with its real quirks: 2017 CSV (trailing header comma, CRLF), images_00N/images, RGBA."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
    rows, names = [header], []
    labels = ["No Finding", "Effusion|Mass", "Hernia", "No Finding", "Nodule", "Cardiomegaly", "No Finding"]
    for index, finding in enumerate(labels):
        name = f"0000000{index // 2 + 1}_00{index % 2}.png"
        names.append(name)
        rows.append(f"{name},{finding},{index % 2},{index // 2 + 1},05{index}Y,F,{'PA' if index % 3 else 'AP'},"
                    f"2500,2048,0.168,0.168")
    (root / "Data_Entry_2017.csv").write_bytes("\r\n".join(rows).encode() + b"\r\n")
    (root / "test_list.txt").write_text("\n".join(names[:2]))
    (root / "train_val_list.txt").write_text("\n".join(names[2:]))
    for index, name in enumerate(names[:-1]):  # the last one in the table is not downloaded
        folder = root / f"images_00{1 + index % 2}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (64, 64), dtype=np.uint8)
        if index == 3:  # a grayscale image stored as RGBA, as a few real ones are
            pixels = np.dstack([pixels] * 3 + [np.full_like(pixels, 255)])
        if index == 4:
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # truly colour
        Image.fromarray(pixels).save(folder / name)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(root / "images_001" / "images" / "extra.png")
    return root


def test_nih_release_layout_keeps_the_official_split(tmp_path):
    root = write_nih_folder(tmp_path / "nih")
    with pytest.raises(DataError, match=r"1 of 7 images .* --allow-missing"):
        prepare_nih(root, None, tmp_path / "refused", image_size=32, salt=SALT, progress=False)
    assert not (tmp_path / "refused").exists()
    summary = prepare_nih(root, None, tmp_path / "out", image_size=32, salt=SALT, workers=2, progress=False,
                          allow_missing_images=True)
    assert summary["counts"] == {"input": 7, "accepted": 5, "rejected": 2, "duplicate": 0}
    assert summary["format"] == "nih" and summary["official_split"] and summary["missing_images"] == 1
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv").set_index("source_path")["reason"]
    assert rejects["images_001/images/extra.png"] == "not in the label table Data_Entry_2017.csv"
    assert rejects["images_001/images/00000003_000.png"].startswith("colour image")
    prepared = load_prepared(tmp_path / "out")
    manifest = prepared.manifest.set_index("image_id")
    assert prepared.categories == list(load_prepared(tmp_path / "out").summary["categories"])
    assert len(prepared.categories) == 14
    assert manifest.loc["00000001_000.png", "split"] == "test" and manifest.loc["00000001_000.png", "fold"] == -1
    assert manifest.loc["00000002_000.png", "split"] == "cv" and pd.isna(manifest.loc["00000002_000.png", "fold"])
    assert manifest.loc["00000001_001.png", ["Effusion", "Mass"]].tolist() == [1, 1]
    assert manifest.loc["00000002_001.png", "image_path"] == "images/00000002_001.png"  # the RGBA one
    assert manifest.loc["00000001_000.png", "view_position"] == "AP"
    # 0.168 mm over 2048 rows / 2500 columns of the original, now 64 x 64 px.
    assert manifest.loc["00000001_000.png", "pixel_spacing_row_mm"] == pytest.approx(0.168 * 2048 / 64)
    assert manifest.loc["00000001_000.png", "pixel_spacing_col_mm"] == pytest.approx(0.168 * 2500 / 64)
    assert manifest["patient_key"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert manifest.loc["00000001_000.png", "patient_key"] == manifest.loc["00000001_001.png", "patient_key"]


def test_synthetic_nih_set_goes_through_prepare(tmp_path):
    from data.synthetic import write_nih

    from search.cli import main

    write_nih(tmp_path / "nih", n_images=12, seed=4, image_size=64)
    code = main(["prepare", str(tmp_path / "nih"), "--format", "nih", "--out", str(tmp_path / "out"),
                 "--image-size", "32", "--salt", SALT, "--workers", "2", "--quiet"])
    summary = load_prepared(tmp_path / "out").summary
    assert code == 0 and summary["counts"] == {"input": 12, "accepted": 12, "rejected": 0, "duplicate": 0}
    manifest = load_prepared(tmp_path / "out").manifest
    assert set(manifest["split"]) <= {"cv", "test"} and (manifest.loc[manifest["split"] == "test", "fold"] == -1).all()


def test_load_prepared_refuses_a_folder_that_is_not_one(tmp_path):
    with pytest.raises(DataError, match="manifest.csv is missing"):
        load_prepared(tmp_path)


def kill_worker_on_first_file(task, settings, images_dir):
    """A conversion whose process dies (SIGKILL, as the out-of-memory killer does) on one file."""
    import signal

    marker = Path(images_dir).parent / "kill-worker-on.txt"  # a file: a forkserver worker sees no later env
    if marker.is_file() and task.source_path == marker.read_text():
        os.kill(os.getpid(), signal.SIGKILL)
    return REAL_CONVERT_ONE(task, settings, images_dir)


def test_a_file_that_kills_its_worker_is_rejected_and_the_run_goes_on(synthetic_hospital, tmp_path, monkeypatch):
    import pydicom

    # A radiograph that would be accepted (not the synthetic CT outlier), so its conversion is attempted.
    killer = [path.relative_to(synthetic_hospital).as_posix() for path in sorted(synthetic_hospital.rglob("*.dcm"))
              if pydicom.dcmread(path, stop_before_pixels=True).Modality != "CT"][3:]
    monkeypatch.setattr(batch_conversion, "convert_one", kill_worker_on_first_file)
    out = tmp_path / "out"
    out.mkdir()
    (out / "kill-worker-on.txt").write_text(killer[0])
    summary = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32,
                               salt=SALT, workers=2, progress=False)
    rejects = pd.read_csv(out / "rejects.csv").set_index("source_path")["reason"]
    assert summary["counts"]["input"] == 19 and sum(summary["counts"].values()) == 38
    assert rejects[killer[0]].startswith("conversion worker died (signal 9, SIGKILL)")
    # The rejection is recorded: a re-run (the file still deadly) converts nothing and does not die there.
    summary_again = prepare_hospital(synthetic_hospital, synthetic_hospital / "labels.csv", out, image_size=32,
                                     salt=SALT, workers=2, progress=False)
    assert summary_again["counts"] == summary["counts"] and progress_lines(out) == 19


def test_a_corrected_copy_of_the_data_never_reuses_old_images(shared_data, tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    shutil.copy(shared_data / "dicom" / "highdicom_dx_image.dcm", original / "a.dcm")
    (original / "labels.csv").write_text("image,labels\na.dcm,normal\n")
    corrected = tmp_path / "corrected"
    shutil.copytree(original, corrected)
    raw = bytearray((original / "a.dcm").read_bytes())
    raw[-20001:-1] = bytes(255 - value for value in raw[-20001:-1])  # 8-bit pixels at the end: same size
    (corrected / "a.dcm").write_bytes(bytes(raw))
    stat = (original / "a.dcm").stat()
    assert (corrected / "a.dcm").stat().st_size == stat.st_size
    os.utime(corrected / "a.dcm", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what `cp -p` or rsync would keep

    def prepared_png(folder: Path, out: Path) -> bytes:
        prepare_hospital(folder, folder / "labels.csv", out, image_size=32, salt=SALT, workers=1, progress=False)
        return (out / load_prepared(out).manifest["image_path"][0]).read_bytes()

    first = prepared_png(original, tmp_path / "out")
    fresh = prepared_png(corrected, tmp_path / "fresh")
    assert prepared_png(corrected, tmp_path / "out") == fresh != first  # another folder: converted again
    # The same folder, content changed in place with size and mtime kept: converted again too.
    shutil.copy(original / "a.dcm", corrected / "a.dcm")
    os.utime(corrected / "a.dcm", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert prepared_png(corrected, tmp_path / "out") == first


def test_free_text_in_code_string_headers_never_reaches_an_output(shared_data, tmp_path):
    import pydicom

    from data.dicom_header import MODALITY_TERMS, clean_code_string

    assert clean_code_string(" pa ", {"PA"}) == "PA" and clean_code_string(None, {"PA"}) == ""
    assert clean_code_string("LATERAL", {"PA"}) == "other" and clean_code_string("PA\\AP", {"PA"}) == "other"
    folder = tmp_path / "in"
    folder.mkdir()
    for name, attribute in (("view.dcm", "ViewPosition"), ("modality.dcm", "Modality")):
        dataset = pydicom.dcmread(shared_data / "dicom" / "highdicom_dx_image.dcm")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns that these are not valid CS / UI values
            dataset.SOPInstanceUID = "1.2.3.4.5" if name == "view.dcm" else "ZZYZX-PHI-UID"
            setattr(dataset, attribute, f"ZZYZX-PHI-{attribute}")
        dataset.save_as(folder / name)
    (folder / "labels.csv").write_text("image,labels\nview.dcm,normal\nmodality.dcm,normal\n")
    summary = prepare_hospital(folder, folder / "labels.csv", tmp_path / "out", image_size=32, salt=SALT,
                               workers=1, progress=False)
    assert summary["counts"] == {"input": 2, "accepted": 1, "rejected": 1, "duplicate": 0}
    assert summary["header_values_replaced"] == {"view_position": 1, "modality": 0}
    assert load_prepared(tmp_path / "out").manifest["view_position"].tolist() == ["other"]
    assert pd.read_csv(tmp_path / "out" / "rejects.csv")["reason"][0].startswith("modality other (not a DICOM")
    assert "ZZYZX" not in text_outputs(tmp_path / "out")
    # With any modality accepted, the bad one is written as "other" and its bad UID is not the image id.
    summary = prepare_hospital(folder, folder / "labels.csv", tmp_path / "any", image_size=32, salt=SALT,
                               workers=1, progress=False, allowed_modalities=None)
    assert summary["header_values_replaced"]["modality"] == 1  # (the other file is its pixel duplicate)
    assert load_prepared(tmp_path / "any").manifest["image_id"][0].startswith("sha256:")
    assert "ZZYZX" not in text_outputs(tmp_path / "any") and "DR" in MODALITY_TERMS
