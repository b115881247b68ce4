"""benchmarks/gpu_throughput.py runs end to end at a tiny size (the GPU figures are in the README)."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmark_prints_one_json_line_per_case(tmp_path):
    out = tmp_path / "cases.jsonl"
    # In this process (TensorFlow is loaded once per test session); the lead runs it under JAX too.
    code = load_benchmark().main(["--quick", "--backbones", "resnet50", "--methods", "C",
                                  "--precisions", "float32", "--json-out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["method"], row["batch_size"], row["image_size"]) for row in rows] == [("C", 2, 32)]
    row = rows[0]
    assert row["images_per_s"] > 0 and "error" not in row
    assert row["seconds_per_chestxray14_epoch"] == pytest.approx(86_524 / row["images_per_s"])
    assert row["trainable_params"] == 23_563_278  # ResNet50 + a 14-output head, all trainable
    assert row["study_seconds_4_gpus"] == 5902.0
