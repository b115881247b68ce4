"""Images/s of data.pipeline.make_dataset against a keras.utils.PyDataset loader, same PNGs, same machine.

The PyDataset is how the reference study fed its model: each batch read, decoded and preprocessed in
Python, one batch at a time (workers=1, no multiprocessing). The pipeline is measured doing the same work
(augment=False) and with its default augmentation (more work than the baseline). Both are consumed without
a model, so this measures only how fast each can feed one: `epoch1` decodes (and fills the cache), `cached`
is the median later epoch, `no_cache` decodes every epoch (the NIH-sized case), `in_memory` reads an
InMemoryHandle's array.

    python benchmarks/pipeline_throughput.py --images 256 --image-size 512 --batch-size 16 --epochs 3
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
    """Synthetic chest radiographs (data/synthetic.py): realistic structure, so PNG decoding costs what it would."""
    from data.synthetic import write_nih

    write_nih(folder, n_images=n_images, seed=0, image_size=image_size, prevalence="balanced")
    return sorted((folder / "images").glob("*.png"))[:n_images]


def study_loader(paths, labels, batch_size: int):
    """The baseline: a PyDataset that reads, decodes and preprocesses one batch in Python per call."""
    import keras
    import numpy as np
    from PIL import Image

    class BatchReader(keras.utils.PyDataset):
        def __len__(self):
            return (len(paths) + batch_size - 1) // batch_size

        def __getitem__(self, index):
            rows = range(index * batch_size, min((index + 1) * batch_size, len(paths)))
            gray = np.stack([np.asarray(Image.open(paths[row]), dtype=np.float32) for row in rows])
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
    parser.add_argument("--epochs", type=int, default=3, help="pipeline epochs (epoch 1 decodes; later ones cached)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from data.pipeline import make_dataset

    with tempfile.TemporaryDirectory(prefix="cxrtune-bench-") as folder:
        paths = synthetic_pngs(Path(folder) / "nih", args.images, args.image_size)
        labels = np.random.default_rng(0).integers(0, 2, (len(paths), 14)).astype(np.float32)
        baseline = study_loader(paths, labels, args.batch_size)
        figures = {"baseline_pydataset": float(np.median([
            images_per_s((baseline[i] for i in range(len(baseline))), len(paths)) for _ in range(2)]))}
        common = dict(image_size=args.image_size, batch_size=args.batch_size, preprocessing="caffe", seed=0)
        files = [str(path) for path in paths]
        # Like for like with the baseline (decode + preprocess, no augmentation), then with augmentation.
        for name, augment in (("", False), ("_augmented", None)):
            streaming = make_dataset(files, labels, training=True, cache=False, augment=augment, **common)
            figures[f"pipeline_no_cache{name}"] = images_per_s(streaming, len(paths))
            cached = make_dataset(files, labels, training=True, cache=True, augment=augment, **common)
            epochs = [images_per_s(cached, len(paths)) for _ in range(args.epochs)]
            figures[f"pipeline_epoch1{name}"] = epochs[0]
            figures[f"pipeline_cached{name}"] = float(np.median(epochs[1:]))
        in_memory = np.stack([np.asarray(Image.open(path)) for path in paths])  # as an InMemoryHandle holds
        from_array = make_dataset(in_memory, labels, training=True, **common)
        figures["pipeline_in_memory_augmented"] = float(np.median([images_per_s(from_array, len(paths))
                                                                   for _ in range(args.epochs)]))

    base = figures["baseline_pydataset"]
    report = {
        "machine": cpu_model(), "cpus": os.cpu_count(),
        "tensorflow": tf.__version__, "images": len(paths), "image_size": args.image_size,
        "batch_size": args.batch_size, "images_per_s": {k: round(v, 1) for k, v in figures.items()},
        "ratio_to_baseline": {k: round(v / base, 2) for k, v in figures.items() if k != "baseline_pydataset"},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
