"""How fast `cxrtune synth` writes: images per second for both formats at two sizes.

Usage: python benchmarks/synthetic_speed.py [--n-images 300]
Prints wall-clock and CPU seconds (CPU time is the fairer figure on a shared machine).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from data.synthetic import write_hospital, write_nih  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=300)
    args = parser.parse_args()
    print(f"{'format':10s} {'px':>5s} {'images':>7s} {'wall s':>8s} {'cpu s':>8s} {'images/s (cpu)':>15s}")
    for writer, name in ((write_hospital, "hospital"), (write_nih, "nih")):
        for size in (64, 256):
            with tempfile.TemporaryDirectory() as folder:
                wall, cpu = time.perf_counter(), time.process_time()
                writer(Path(folder) / "out", n_images=args.n_images, seed=0, image_size=size)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:10s} {size:5d} {args.n_images:7d} {wall:8.2f} {cpu:8.2f} {args.n_images / cpu:15.0f}")


if __name__ == "__main__":
    main()
