"""Bad command lines and hopeless inputs: one line naming the flag or file, exit 2, no traceback, and
neither TensorFlow nor Ray imported. All cases run in one fresh interpreter (its imports are the check)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

RUNNER = """
import contextlib, io, json, sys
from search.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "err": err.getvalue()})
print(json.dumps({"results": results, "tensorflow": "tensorflow" in sys.modules, "ray": "ray" in sys.modules}))
"""


def run_cli_cases(cases: list[list[str]], cwd: Path) -> dict:
    env_path = f"{REPO_ROOT}"
    completed = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], cwd=cwd, capture_output=True,
                               text=True, timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin",
                                                            "CXRTUNE_SALT": "test-salt"})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


def test_bad_flags_and_hopeless_inputs_answer_in_one_line_before_tensorflow(shared_data, tmp_path):
    hospital = tmp_path / "hospital"
    hospital.mkdir()
    shutil.copy(shared_data / "dicom" / "highdicom_dx_image.dcm", hospital / "a.dcm")
    (hospital / "labels.csv").write_text("image,labels\na.dcm,normal\n")
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("x.dcm", "y.dcm"):
        (junk / name).write_text("not a DICOM file\n")
    (junk / "labels.csv").write_text("image,labels\nx.dcm,normal\ny.dcm,normal\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    # A working directory holding files named like the built-in taxonomies must change nothing.
    (tmp_path / "study").mkdir()
    (tmp_path / "nih").write_text("not a taxonomy")
    prepare = ["prepare", str(hospital), "--quiet", "--image-size", "32"]
    cases = {
        "--workers": prepare + ["--out", str(tmp_path / "w"), "--workers", "0"],
        "--image-size": ["prepare", str(hospital), "--out", str(tmp_path / "s"), "--image-size", "abc"],
        "--out": ["prepare", str(hospital)],
        "the input folder": prepare + ["--out", str(hospital)],
        "no image was accepted: 2 input = 2 rejected (2 not a DICOM image)": [
            "prepare", str(junk), "--out", str(tmp_path / "junk-out"), "--quiet", "--workers", "1"],
        "--bootstrap": ["train-final", "somesearch", "--bootstrap", "-1"],
        "--weights-dir": ["weights", "--weights-dir", str(tmp_path / "missing")],
        "is a file": ["demo", "--out", str(a_file)],
        "--allow-modality": prepare + ["--out", str(tmp_path / "m"), "--allow-modality", "ZZYZX"],
        "--folds": ["folds", str(tmp_path), "--folds", "1"],
    }
    ok = prepare + ["--out", str(tmp_path / "ok"), "--workers", "1"]
    outcome = run_cli_cases(list(cases.values()) + [ok], cwd=tmp_path)
    for (expected, argv), result in zip(cases.items(), outcome["results"]):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2 and len(lines) == 1 and expected in lines[0], (argv, result)
        assert "Traceback" not in result["err"] and "usage:" not in result["err"]
    assert outcome["results"][-1]["code"] == 0, outcome["results"][-1]
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["taxonomy"] == "study"
    assert json.loads((tmp_path / "junk-out" / "summary.json").read_text())["counts"]["rejected"] == 2
    assert not outcome["tensorflow"] and not outcome["ray"]
    assert not (tmp_path / "w").exists() and not (tmp_path / "m").exists()
