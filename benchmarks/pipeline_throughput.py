"""Images/s of data.pipeline.make_dataset against a keras.utils.PyDataset loader, same PNGs, same machine.

The PyDataset is how the reference study fed its model: each batch read, decoded and preprocessed in
Python, one batch at a time (workers=1, no multiprocessing). Both are measured without augmentation and
with the same default augmentation (the baseline's per image with scipy, as Keras 2's ImageDataGenerator
did it); each pipeline figure is compared with the baseline doing the same work. Nothing consumes the
batches, so this measures how fast each can feed a model: `epoch1` decodes and fills the cache, `cached`
reads it, `no_cache` decodes every epoch (the NIH-sized case), `in_memory` reads an InMemoryHandle's array.

    python benchmarks/pipeline_throughput.py --images 256 --image-size 512 --batch-size 16 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def synthetic_pngs(folder: Path, n_images: int, image_size: int) -> list[Path]:
    """Synthetic chest radiographs (data/synthetic/): realistic structure, so PNG decoding costs what it would."""
    from data.synthetic import write_nih

    write_nih(folder, n_images=n_images, seed=0, image_size=image_size, prevalence="balanced")
    return sorted((folder / "images").glob("*.png"))[:n_images]


def study_loader(paths, labels, batch_size: int, *, augment: bool):
    """The baseline: a PyDataset that reads, decodes and preprocesses one batch in Python per call.

    With `augment`, each image gets the pipeline's default random transforms the way Keras 2's
    ImageDataGenerator.random_transform made them: scipy.ndimage.affine_transform (bilinear, edges
    extended), then brightness and contrast in numpy.
    """
    import keras
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    from data.pipeline import Augmentation

    settings, rng = Augmentation(), np.random.default_rng(0)

    def transform(image):
        side = image.shape[0]
        angle = np.deg2rad(rng.uniform(-settings.rotation_deg, settings.rotation_deg))
        zoom = 1 + rng.uniform(-settings.zoom_fraction, settings.zoom_fraction)
        matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
        center = np.full(2, (side - 1) / 2)
        shift = rng.uniform(-settings.shift_fraction, settings.shift_fraction, 2) * side
        image = ndimage.affine_transform(image, matrix, offset=center - matrix @ center - shift, order=1,
                                         mode="nearest")
        contrast = 1 + rng.uniform(-settings.contrast, settings.contrast)
        brightness = rng.uniform(-settings.brightness, settings.brightness) * 255
        return np.clip((image - image.mean()) * contrast + image.mean() + brightness, 0, 255)

    class BatchReader(keras.utils.PyDataset):
        def __len__(self):
            return (len(paths) + batch_size - 1) // batch_size

        def __getitem__(self, index):
            rows = range(index * batch_size, min((index + 1) * batch_size, len(paths)))
            gray = [np.asarray(Image.open(paths[row]), dtype=np.float32) for row in rows]
            gray = np.stack([transform(image) for image in gray] if augment else gray)
            images = keras.applications.resnet50.preprocess_input(np.repeat(gray[..., None], 3, axis=-1))
            return images, labels[list(rows)]

    return BatchReader(workers=1, use_multiprocessing=False)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def images_per_s(batches, n_images: int) -> float:
    start = time.perf_counter()
    for _ in batches:
        pass
    return n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="epochs of every loader, taken in turns (median)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from data.pipeline import make_dataset

    with tempfile.TemporaryDirectory(prefix="cxrtune-bench-") as folder:
        paths = synthetic_pngs(Path(folder) / "nih", args.images, args.image_size)
        labels = np.random.default_rng(0).integers(0, 2, (len(paths), 14)).astype(np.float32)
        common = dict(image_size=args.image_size, batch_size=args.batch_size, preprocessing="caffe", seed=0)
        files = [str(path) for path in paths]
        in_memory = np.stack([np.asarray(Image.open(path)) for path in paths])  # as an InMemoryHandle holds
        loaders, figures = {}, {}
        for name, augment in (("", False), ("_augmented", None)):
            baseline = study_loader(paths, labels, args.batch_size, augment=augment is None)
            loaders[f"baseline_pydataset{name}"] = lambda b=baseline: (b[i] for i in range(len(b)))
            streaming = make_dataset(files, labels, training=True, cache=False, augment=augment, **common)
            loaders[f"pipeline_no_cache{name}"] = lambda d=streaming: d
            started = time.perf_counter()  # the cache is filled when the dataset is made: count that too
            cached = make_dataset(files, labels, training=True, cache=True, augment=augment, **common)
            for _ in cached:
                pass
            figures[f"pipeline_epoch1{name}"] = len(paths) / (time.perf_counter() - started)
            loaders[f"pipeline_cached{name}"] = lambda d=cached: d
        from_array = make_dataset(in_memory, labels, training=True, **common)
        loaders["pipeline_in_memory_augmented"] = lambda d=from_array: d
        # Rounds over every loader, medians per loader: a machine whose load drifts biases none of them.
        samples = {name: [] for name in loaders}
        for _ in range(args.rounds):
            for name, epoch in loaders.items():
                samples[name].append(images_per_s(epoch(), len(paths)))
        figures |= {name: float(np.median(values)) for name, values in samples.items()}

    def ratio(name: str) -> float:  # augmented rows against the augmented baseline
        return round(figures[name] / figures["baseline_pydataset" + ("_augmented" if "augmented" in name else "")], 2)

    report = {
        "machine": cpu_model(), "cpus": os.cpu_count(),
        "tensorflow": tf.__version__, "images": len(paths), "image_size": args.image_size,
        "batch_size": args.batch_size, "images_per_s": {k: round(v, 1) for k, v in figures.items()},
        "ratio_to_baseline": {k: ratio(k) for k in figures if not k.startswith("baseline")},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
