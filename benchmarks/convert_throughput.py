"""Conversion throughput of `cxrtune prepare` against pydicom's decoding alone, on real radiographs.

    python benchmarks/convert_throughput.py [--copies 8] [--image-size 512] [--workers N]

For each real file kind (JPEG baseline, raw 10-bit, raw 15-bit, JPEG 2000 lossless, RLE) it times
1. decode only: `pydicom.dcmread(path).pixel_array` (stored values, nothing else), one process;
2. convert: `data.image_conversion.convert_image` (decode + LUTs + resize + 8-bit), one process, plus PNG writing;
then the whole folder through `prepare_hospital` with 1 worker and with all cores.
Needs ../shared/data/dicom and the pydicom-data package.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom"


def real_files(folder: Path) -> dict[str, Path]:
    """kind -> a real radiograph in that encoding (RLE made here from the raw chest with pydicom)."""
    import pydicom
    from pydicom.data import get_testdata_file

    files = {
        "jpeg-baseline 1024px (siim)": SHARED_DICOM / "siim_chest_pa_jpeg_baseline.dcm",
        "raw 10-bit 440px, no meta": SHARED_DICOM / "CR-MONO1-10-chest.dcm",
        "raw 15-bit 1955x1841 (RG1)": Path(get_testdata_file("RG1_UNCR.dcm")),
        "jpeg2000-lossless (RG1)": Path(get_testdata_file("RG1_J2KR.dcm")),
    }
    dataset = pydicom.dcmread(files["raw 15-bit 1955x1841 (RG1)"])
    dataset.compress(pydicom.uid.RLELossless)
    dataset.save_as(folder / "rg1_rle.dcm")
    files["rle (RG1)"] = folder / "rg1_rle.dcm"
    return files


def per_image_seconds(function, paths: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds per image in this process. CPU time hardly moves when other jobs share the
    cores; wall time does."""
    function(paths[0])  # warm imports and caches
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        function(path)
    return (time.perf_counter() - wall) / len(paths), (time.process_time() - cpu) / len(paths)


def cpu_seconds_with_children() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decode_only(path: Path):
    """dcmread + pixel_array (through data.dicom only to set the transfer syntax of files without meta)."""
    from data.dicom import decode_stored_values, read_dicom_header

    dataset, _ = read_dicom_header(path)
    return decode_stored_values(dataset, path)


def convert_and_write(path: Path, image_size: int, out: Path):
    from data.image_conversion import convert_image, write_png_atomic

    write_png_atomic(convert_image(path, image_size=image_size), out / f"{path.stem}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of each real file in the folder")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from data.prepare import prepare_hospital

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        kinds = real_files(root)
        png_dir = root / "png"
        png_dir.mkdir()
        print(f"per image, one process, output {args.image_size} px 8-bit PNG (wall ms / CPU ms)")
        print(f"{'encoding':32s} {'decode':>15s} {'convert+PNG':>15s} {'CPU ratio':>9s}")
        for kind, path in kinds.items():
            decode = per_image_seconds(decode_only, [path] * 3)
            convert = per_image_seconds(lambda item: convert_and_write(item, args.image_size, png_dir), [path] * 3)
            print(f"{kind:32s} {decode[0] * 1e3:7.1f}/{decode[1] * 1e3:7.1f} "
                  f"{convert[0] * 1e3:7.1f}/{convert[1] * 1e3:7.1f} {convert[1] / decode[1]:9.2f}")

        folder = root / "folder"
        folder.mkdir()
        rows = []
        for index, (kind, path) in enumerate(kinds.items()):
            for copy in range(args.copies):
                name = f"{index}_{copy}.dcm"
                shutil.copy(path, folder / name)
                rows.append(f"{name},normal,{index}")
        (folder / "labels.csv").write_text("image,labels,patient_id\n" + "\n".join(rows) + "\n")
        paths = sorted(folder.glob("*.dcm"))
        decode_wall, decode_cpu = (value * len(paths) for value in per_image_seconds(decode_only, paths))
        print(f"\nfolder of {len(paths)} files ({args.copies} copies of each kind), load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"decode only, 1 process: {len(paths) / decode_wall:6.2f} images/s, "
              f"{decode_cpu / len(paths) * 1e3:.0f} CPU ms per image")
        for workers in sorted({1, args.workers}):
            out = root / f"prepared_{workers}"
            wall, cpu = time.perf_counter(), cpu_seconds_with_children()
            prepare_hospital(folder, folder / "labels.csv", out, image_size=args.image_size, salt="bench",
                             workers=workers, progress=False)
            wall, cpu = time.perf_counter() - wall, cpu_seconds_with_children() - cpu
            print(f"prepare, {workers} worker(s):  {len(paths) / wall:6.2f} images/s, "
                  f"{cpu / len(paths) * 1e3:.0f} CPU ms per image ({cpu / decode_cpu:.2f}x decode-only CPU)")

if __name__ == "__main__":
    main()
