"""Training throughput of the study's models: images/s and seconds per ChestX-ray14 epoch.

Trains ResNet50 and DenseNet121 (built by trainables.model, as in a trial) on synthetic arrays for
methods A, B and C with the study's batch sizes (128 for A/B, 16 for C), in float32 and mixed
precision, and prints one table row and one JSON line per case.

Pure Keras 3: no tf.data and no TensorFlow import, so it runs under KERAS_BACKEND=jax (for GPU
machines where TensorFlow is not installed) as well as TensorFlow. Data come from a Python
generator that yields one pre-made batch again and again, so the figure is the model's cost, not
decoding or augmentation.

    python benchmarks/gpu_throughput.py                        # 512 px, every case
    KERAS_BACKEND=jax python benchmarks/gpu_throughput.py --backbones resnet50 --methods C
    python benchmarks/gpu_throughput.py --quick                # CPU smoke test: 32 px, 1 step

The study (4 GPUs): ResNet50 method C 5,902 s per ChestX-ray14 epoch, DenseNet121 method C 10,884 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

CHESTXRAY14_TRAIN_VAL_IMAGES = 86_524  # NIH's train_val_list.txt
STUDY_SECONDS_PER_EPOCH_4_GPUS = {("resnet50", "C"): 5902.0, ("densenet121", "C"): 10884.0}
PRECISIONS = {"float32": "float32", "mixed": "mixed_float16", "bf16": "mixed_bfloat16"}
N_CLASSES = 14


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=512, help="px (default 512, the study's)")
    parser.add_argument("--backbones", default="resnet50,densenet121")
    parser.add_argument("--methods", default="A,B,C", help="A (frozen), B (frozen through --freeze), C (all)")
    parser.add_argument("--freeze", default="conv3", help="method B's depth (default conv3)")
    parser.add_argument("--precisions", default="float32,mixed", help=f"any of {', '.join(PRECISIONS)}")
    parser.add_argument("--batch-ab", type=int, default=128, help="batch size for A and B (study: 128)")
    parser.add_argument("--batch-c", type=int, default=16, help="batch size for C (study: 16)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                        help="TensorFlow only (JAX always compiles): auto = on with exactly one GPU")
    parser.add_argument("--quick", action="store_true", help="smoke test: 32 px, batch 2, 1 warmup + 1 timed step")
    parser.add_argument("--json-out", type=Path, default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size, args.batch_ab, args.batch_c, args.steps, args.warmup = 32, 2, 2, 1, 1
    return args


def describe_device() -> tuple[str, int]:
    """(device description, number of GPUs) for the active Keras backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        return (f"jax {jax.__version__} {gpus[0].device_kind}" if gpus else f"jax {jax.__version__} cpu"), len(gpus)
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu") if gpus else "cpu"
        return f"tensorflow {tf.__version__} {name}", len(gpus)
    return backend, 0


def repeat_batch(batch_size: int, image_size: int, seed: int = 0):
    """An endless generator of one synthetic (images, labels) batch: float32, preprocessed scale.
    Under JAX the batch is put on the device once, so host-to-device copies (which a real input
    pipeline overlaps with compute) are not timed; TensorFlow's generator adapter prefetches."""
    import keras

    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 50.0, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = (rng.random((batch_size, N_CLASSES)) < 0.1).astype("float32")
    if keras.backend.backend() == "jax":
        images, labels = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)
    while True:
        yield images, labels


def run_case(*, backbone: str, method: str, precision: str, args, gpus: int) -> dict:
    import keras

    from trainables.losses import weighted_bce
    from trainables.model import build_model, logits_view, parameter_counts

    batch_size = args.batch_c if method == "C" else args.batch_ab
    freeze = {"A": "all", "B": args.freeze, "C": "none"}[method]
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        model = build_model({"backbone": backbone, "method": method, "freeze": freeze, "source_weights": "imagenet",
                             "image_size": args.image_size, "n_classes": N_CLASSES, "batch_size": batch_size},
                            load_weights=False)  # random values: throughput does not depend on them
        model = logits_view(model)  # trained as a trial trains it: the loss reads logits
        jit = {"on": True, "off": False, "auto": gpus == 1 or keras.backend.backend() == "jax"}[args.xla]
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=weighted_bce(5.0, 1.2), jit_compile=jit)
        batches = repeat_batch(batch_size, args.image_size)
        model.fit(batches, steps_per_epoch=args.warmup, epochs=1, verbose=0, shuffle=False)
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - started
        trainable, total = parameter_counts(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    images_per_s = args.steps * batch_size / seconds
    return {"backbone": backbone, "method": method, "precision": precision, "batch_size": batch_size,
            "image_size": args.image_size, "steps": args.steps, "xla": bool(jit), "images_per_s": images_per_s,
            "seconds_per_chestxray14_epoch": CHESTXRAY14_TRAIN_VAL_IMAGES / images_per_s,
            "study_seconds_4_gpus": STUDY_SECONDS_PER_EPOCH_4_GPUS.get((backbone, method)),
            "trainable_params": trainable, "total_params": total}


def main(argv=None) -> int:
    args = parse_args(argv)
    device, gpus = describe_device()
    print(f"device: {device}; {args.image_size} px; {args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'backbone':<12} {'method':<6} {'precision':<9} {'batch':>5} {'images/s':>10} {'s/CXR14 epoch':>14}")
    failures = 0
    for backbone in args.backbones.split(","):
        for method in args.methods.split(","):
            for precision in args.precisions.split(","):
                try:
                    row = run_case(backbone=backbone, method=method, precision=precision, args=args, gpus=gpus)
                except Exception as error:  # e.g. out of GPU memory: report it and go on with the next case
                    failures += 1
                    row = {"backbone": backbone, "method": method, "precision": precision,
                           "error": f"{type(error).__name__}: {str(error)[:300]}"}
                    print(f"{backbone:<12} {method:<6} {precision:<9} failed: {row['error']}")
                else:
                    print(f"{backbone:<12} {method:<6} {precision:<9} {row['batch_size']:>5} "
                          f"{row['images_per_s']:>10.1f} {row['seconds_per_chestxray14_epoch']:>14.0f}")
                row["device"] = device
                line = json.dumps(row, sort_keys=True)
                print(line)
                if args.json_out:
                    with open(args.json_out, "a") as stream:
                        stream.write(line + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
