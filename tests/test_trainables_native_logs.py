"""TensorFlow's native start-up lines stay off the terminal in a fresh process (as in each Ray trial worker)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE_MARKS = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard")


def _native_lines(code: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "CXRTUNE_VERBOSE")}
    env["PYTHONPATH"] = ROOT
    stderr = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                            check=True).stderr
    return [line for line in stderr.splitlines() if any(mark in line for mark in NATIVE_MARKS)]


def test_the_quiet_import_leaves_no_native_line_before_keras():
    if not _native_lines("import keras"):
        pytest.skip("this TensorFlow build prints no native start-up lines here: nothing to keep quiet")
    # What train_fold does first in a trial worker: TensorFlow imported quietly, then keras.
    assert _native_lines("from trainables.native_logs import import_tensorflow_quietly\n"
                         "import_tensorflow_quietly()\nimport keras") == []
