"""`cxrtune spaces show|list` through the real command-line entry point."""
from __future__ import annotations

import subprocess
import sys

from search.cli import main
from spaces import expand


def test_show_prints_every_config_and_the_trial_count(capsys):
    assert main(["spaces", "show", "paper", "--folds", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["config_id", "backbone", "method", "freeze", "source_weights", "image_size",
                                "epochs", "batch_size", "learning_rate", "dropout", "frozen_bn", "seed"]
    rows = lines[1:-1]
    assert [row.split()[0] for row in rows] == [config["config_id"] for config in expand("paper")]
    assert rows[0].split()[1:] == ["resnet50", "A", "all", "imagenet", "512", "30", "128", "0.0001", "0.5",
                                   "inference", "0"]
    assert lines[-1] == "paper: 42 config(s) x 5 fold(s) = 210 trial(s)"


def test_show_reads_a_yaml_file_with_a_seed(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmethod: [A, D]\nbackbone: densenet121\nlearning_rate: {uniform: [1.0e-4, 1.0e-3]}\n"
                    "num_samples: 2\n")
    assert main(["spaces", "show", str(path), "--folds", "3", "--seed", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "mine: 4 config(s) x 3 fold(s) = 12 trial(s)"
    assert {line.split()[-1] for line in lines[1:-1]} == {"9"}


def test_list_names_the_presets(capsys):
    assert main(["spaces", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["demo", "paper"]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("method: [A, D]\nsource_weights: {D: imagenet}\n")
    assert main(["spaces", "show", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("cxrtune spaces: error: ") and "method D" in error
    assert main(["spaces", "show", "demo", "--folds", "0"]) == 2
    assert "--folds: 0" in capsys.readouterr().err


def test_the_command_imports_neither_tensorflow_nor_ray_and_spaces_imports_no_other_package():
    code = (
        "import sys; import spaces; spaces.expand('paper'); "
        "print(sorted(m for m in ('data', 'trainables', 'search') if m in sys.modules)); "
        "from search.cli import main; main(['spaces', 'show', 'demo']); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = output.splitlines()
    assert lines[0] == "[]" and lines[-1] == "[]"


def test_show_with_available_sources_leaves_out_the_rest_and_says_so(capsys):
    assert main(["spaces", "show", "demo", "--folds", "2", "--available-sources", "chestxray8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[4] for line in lines[1:5]] == ["chestxray8", "chestxray8", "chestxray8", "none"]
    assert lines[-2] == "left out 3 config(s) whose source weights are not available: imagenet (3)"
    assert lines[-1] == "demo: 4 config(s) x 2 fold(s) = 8 trial(s)"
