"""How a trial uses its hardware: distribution strategy, mixed precision, XLA, memory, threads.

`plan_runtime` is a pure decision (unit-tested here without GPUs); `apply_runtime` carries it out
with TensorFlow. Ray sets CUDA_VISIBLE_DEVICES to a trial's GPUs, so every GPU TensorFlow sees
belongs to this trial and MirroredStrategy() spans exactly them.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainables.errors import TrainableConfigError

AUTO = "auto"


@dataclass(frozen=True)
class RuntimePlan:
    gpus: int
    mirrored: bool          # MirroredStrategy over all visible GPUs (only with more than one)
    mixed_precision: bool   # mixed_float16 compute, float32 variables and last Dense
    jit_compile: bool       # XLA
    memory_growth: bool     # allocate GPU memory as needed, so fractional GPUs per trial fit
    drop_remainder: bool    # XLA recompiles for a short last batch: drop it under XLA


def plan_runtime(gpus: int, *, mixed_precision=AUTO, xla=AUTO) -> RuntimePlan:
    """On GPU, mixed precision and XLA by default; on CPU neither (both slow it down).
    XLA is never combined with MirroredStrategy (broken in Keras 3)."""
    if mixed_precision == AUTO:
        mixed_precision = gpus > 0
    if xla == AUTO:
        xla = gpus == 1
    if not isinstance(mixed_precision, bool) or not isinstance(xla, bool):
        raise TrainableConfigError(
            f"mixed_precision and xla must be 'auto', true or false; got {mixed_precision!r}, {xla!r}")
    if xla and gpus > 1:
        raise TrainableConfigError(
            f"xla=true with {gpus} GPUs: XLA under MirroredStrategy is broken in Keras 3; use xla='auto'")
    return RuntimePlan(gpus=gpus, mirrored=gpus > 1, mixed_precision=mixed_precision,
                       jit_compile=xla, memory_growth=gpus > 0, drop_remainder=xla)


def visible_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def apply_runtime(plan: RuntimePlan, *, cpus: int | None = None):
    """Configure TensorFlow/Keras for `plan`; returns the distribution strategy to build under."""
    import keras
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, plan.memory_growth)
        except RuntimeError:
            pass  # already initialised in this process (a second trial in one worker): keep as is
    if cpus:
        try:  # TensorFlow ignores OMP_NUM_THREADS; without this every trial takes every core
            tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(cpus))))
        except RuntimeError:
            pass
    keras.mixed_precision.set_global_policy("mixed_float16" if plan.mixed_precision else "float32")
    return tf.distribute.MirroredStrategy() if plan.mirrored else tf.distribute.get_strategy()
