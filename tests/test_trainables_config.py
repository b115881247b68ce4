"""Backbone/source registries and config checks: pure Python, no TensorFlow."""
import subprocess
import sys

import pytest

from trainables.backbones import get_backbone, list_backbones
from trainables.config import check_config, default_batch_size
from trainables.errors import TrainableConfigError, WeightsError
from trainables.runtime import plan_runtime
from trainables.weights import get_source, list_sources

BASE = {"backbone": "resnet50", "method": "B", "freeze": "conv3", "source_weights": "imagenet"}


def test_importing_trainables_starts_neither_tensorflow_nor_ray():
    code = ("import sys, trainables, trainables.train, trainables.pretrain, trainables.report; "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'ray')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_registries_list_their_entries_and_name_them_on_a_miss():
    assert list_backbones() == ["densenet121", "efficientnetv2s", "resnet50"]
    assert list_sources() == ["imagenet", "chestxray8", "imagenet-F+chestxray8", "imagenet-I+chestxray8"]
    with pytest.raises(TrainableConfigError, match="densenet121, efficientnetv2s, resnet50"):
        get_backbone("vgg16")
    with pytest.raises(WeightsError, match="chestxray8"):
        get_source("jft300m")


@pytest.mark.parametrize("backbone, alias, stage", [
    ("resnet50", "10", "conv2"), ("resnet50", "22", "conv3"), ("resnet50", "40", "conv4"),
    ("densenet121", "14", "conv2"), ("densenet121", "39", "conv3"), ("densenet121", "88", "conv4"),
])
def test_study_aliases_name_the_stages(backbone, alias, stage):
    resolved = check_config({**BASE, "backbone": backbone, "freeze": alias})
    assert resolved["freeze"] == stage


def test_defaults_follow_the_study():
    resolved = check_config(BASE)
    assert resolved["batch_size"] == 128 and resolved["image_size"] == 512 and resolved["frozen_bn"] == "inference"
    assert default_batch_size("C") == 16 and default_batch_size("D") == 16


@pytest.mark.parametrize("change, message", [
    ({"method": "D", "freeze": "none"}, "source_weights must be 'none'"),
    ({"method": "A", "freeze": "conv3"}, "freeze must be 'all'"),
    ({"method": "C", "freeze": "conv2"}, "freeze must be 'none'"),
    ({"freeze": "22", "backbone": "densenet121"}, "accepted: conv2, conv3, conv4, 14, 39, 88"),
    ({"method": "E"}, "not one of A, B, C, D"),
    ({"source_weights": "none"}, "needs source weights"),
    ({"frozen_bn": "frozen"}, "inference, train"),
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"dropout": 1.0}, "dropout must be"),
    ({"image_size": "big"}, "image_size must be an integer"),
])
def test_bad_configs_say_what_is_accepted(change, message):
    with pytest.raises(TrainableConfigError, match=message):
        check_config({**BASE, **change})


def test_runtime_plan_on_cpu_one_gpu_and_several():
    cpu = plan_runtime(0)
    assert (cpu.mirrored, cpu.mixed_precision, cpu.jit_compile, cpu.memory_growth) == (False, False, False, False)
    one = plan_runtime(1)
    assert (one.mirrored, one.mixed_precision, one.jit_compile, one.memory_growth, one.drop_remainder) == \
        (False, True, True, True, True)
    four = plan_runtime(4)
    assert (four.mirrored, four.mixed_precision, four.jit_compile, four.memory_growth) == (True, True, False, True)
    assert plan_runtime(1, mixed_precision=False, xla=False).mixed_precision is False
    with pytest.raises(TrainableConfigError, match="MirroredStrategy"):
        plan_runtime(2, xla=True)
