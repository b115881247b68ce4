"""Hostile DICOM files: seeded random mutations of real files through prepare.

Each mutation is one thing a broken export or a hostile sender can produce: a truncated file, flipped
bytes in the header, a wrong VR, a huge declared length, absurd Rows/Columns/BitsAllocated and other
pixel-module values. Prepare must not crash, must not hang (a bound per file, far above the real cost),
and must account for every file as accepted, rejected or duplicate.
"""
from __future__ import annotations

import signal
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import batch_conversion
from data.prepare import prepare_hospital

SEED_FILES = ("highdicom_dx_image.dcm", "CR-MONO1-10-chest.dcm", "siim_chest_pa_jpeg_baseline.dcm")
MUTATIONS_PER_FILE = 12
SECONDS_PER_FILE_BOUND = 20.0  # a hang detector, not a speed test: real files take well under 1 s here
REAL_CONVERT_ONE = batch_conversion.convert_one
# Pixel-module values set to something absurd through pydicom (written with the file's own VRs).
ABSURD_VALUES = {
    "Rows": [0, 1, 65535], "Columns": [0, 3, 65535], "BitsAllocated": [0, 3, 64, 255],
    "BitsStored": [0, 40], "HighBit": [200], "SamplesPerPixel": [0, 3, 255], "PixelRepresentation": [7],
    "NumberOfFrames": ["0", "-5", "999999999"], "PhotometricInterpretation": ["MONOCHROME3", ""],
    "WindowWidth": ["0", "-100", "1e308"], "RescaleSlope": ["0", "1e308", "-1e308"],
    "PixelSpacing": [["0", "-1"]], "Modality": ["", "DX\\CR"],
}
TAGS = {"Rows": b"\x28\x00\x10\x00", "Columns": b"\x28\x00\x11\x00", "BitsAllocated": b"\x28\x00\x00\x01",
        "PixelData": b"\xe0\x7f\x10\x00", "SOPInstanceUID": b"\x08\x00\x18\x00"}


def timed_convert(task, settings, images_dir):
    """convert_one, with the seconds it took in the record (runs in the worker processes)."""
    started = time.monotonic()
    record = REAL_CONVERT_ONE(task, settings, images_dir)
    record["fuzz_seconds"] = time.monotonic() - started
    return record


def mutate(raw: bytes, path: Path, rng: np.random.Generator) -> str:
    """Write one mutation of `raw` to `path`; returns what was done."""
    kind = rng.choice(["truncate", "flip", "vr", "length", "absurd", "absurd"])
    data = bytearray(raw)
    if kind == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "flip":  # bytes inside the header (the first 2 KB), where tags, VRs and lengths live
        for offset in rng.integers(128, min(2048, len(data)), size=int(rng.integers(1, 16))):
            data[offset] = int(rng.integers(0, 256))
    elif kind in ("vr", "length"):
        name = str(rng.choice(list(TAGS)))
        at = data.find(TAGS[name], 132)
        if at < 0:
            kind, data = "truncate", data[: len(data) // 3]
        elif kind == "vr":
            data[at + 4: at + 6] = rng.choice([b"SQ", b"OB", b"UN", b"FD", b"AT", b"\x00\x00"]).tobytes()
        else:  # a declared length far beyond the file
            long_form = bytes(data[at + 4: at + 6]) in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"OF")
            if long_form:
                data[at + 8: at + 12] = struct.pack("<I", 0xFFFFFFF0)
            else:
                data[at + 6: at + 8] = struct.pack("<H", 0xFFF0)
        kind = f"{kind} {name}"
    path.write_bytes(bytes(data))
    if kind == "absurd":
        import pydicom

        name = str(rng.choice(list(ABSURD_VALUES)))
        choices = ABSURD_VALUES[name]
        value = choices[int(rng.integers(0, len(choices)))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True)
            setattr(dataset, name, value)
            dataset.save_as(path)
        kind = f"absurd {name}={value}"
    return kind


def test_mutated_dicom_files_are_each_accounted_for_without_crash_or_hang(shared_data, tmp_path, monkeypatch):
    rng = np.random.default_rng(20261203)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    done: dict[str, str] = {}
    for seed_name in SEED_FILES:
        raw = (shared_data / "dicom" / seed_name).read_bytes()
        for index in range(MUTATIONS_PER_FILE):
            name = f"{Path(seed_name).stem}-{index:02d}.dcm"
            done[name] = mutate(raw, folder / name, rng)
    pd.DataFrame({"image": sorted(done), "labels": "normal"}).to_csv(folder / "labels.csv", index=False)

    monkeypatch.setattr(batch_conversion, "convert_one", timed_convert)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("prepare hung on the fuzzed files"))
    signal.alarm(int(SECONDS_PER_FILE_BOUND * len(done) / 2))
    try:
        summary = prepare_hospital(folder, folder / "labels.csv", tmp_path / "out", image_size=32, salt="fuzz",
                                   workers=2, progress=False, allowed_modalities=None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    counts = summary["counts"]
    assert counts["input"] == len(done) == counts["accepted"] + counts["rejected"] + counts["duplicate"]
    out = tmp_path / "out"
    accounted = (set(pd.read_csv(out / "manifest.csv")["source_path"]) | set(pd.read_csv(out / "rejects.csv")[
        "source_path"]) | set(pd.read_csv(out / "duplicates.csv")["source_path"]))
    assert accounted == set(done)
    records = batch_conversion.read_progress(out, summary_settings(out))
    slow = {name: round(record["fuzz_seconds"], 1) for name, record in records.items()
            if record.get("fuzz_seconds", 0.0) > SECONDS_PER_FILE_BOUND}
    assert not slow, slow
    # Every rejection says why in words (a crash's type at most), never a traceback or a header value.
    reasons = pd.read_csv(out / "rejects.csv")["reason"]
    assert reasons.str.len().between(5, 300).all() and not reasons.str.contains("Traceback").any()
    assert counts["rejected"] >= len(done) // 3, done  # most mutations break a file: the fuzzing did something
    kinds = pd.Series(list(done.values())).str.split().str[0].value_counts()
    assert set(kinds.index) == {"truncate", "flip", "vr", "length", "absurd"}, kinds


def summary_settings(out: Path):
    """The settings line of the restart record (read_progress checks records against it)."""
    import json

    key = json.loads((out / batch_conversion.PROGRESS_FILE).read_text().splitlines()[0])["settings"]

    class Recorded:
        def record_key(self):
            return key

    return Recorded()



def test_header_numbers_beyond_float32_never_become_a_silent_black_image(shared_data, tmp_path):
    import pydicom

    from data.dicom import UnusableImageError, read_radiograph

    dataset = pydicom.dcmread(shared_data / "dicom" / "highdicom_dx_image.dcm")
    dataset.WindowCenter, dataset.WindowWidth = "1e308", "1e308"  # unusable window: percentiles instead
    dataset.save_as(tmp_path / "window.dcm")
    image, facts = read_radiograph(tmp_path / "window.dcm")
    assert facts["voi"] == "percentile" and np.isfinite(image).all() and image.max() > 0.5
    dataset.RescaleSlope, dataset.RescaleIntercept = "1e308", "0"
    dataset.save_as(tmp_path / "slope.dcm")
    with pytest.raises(UnusableImageError, match="not finite"):
        read_radiograph(tmp_path / "slope.dcm")
