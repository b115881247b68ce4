"""What the restart key's content hash costs next to decoding, per real radiograph.

    python benchmarks/hash_cost.py

A re-run of `cxrtune prepare` reuses a conversion only when the file's sha256 matches its record
(`data.batch_conversion.file_fingerprint`), so every re-run reads and hashes every input file once. This prints,
per real file kind (the same files as convert_throughput.py), the file size, the CPU and wall ms of the
fingerprint, of pydicom's decoding alone and of the whole conversion, and hashing as a share of converting.
Needs ../shared/data/dicom and the pydicom-data package.
"""
from __future__ import annotations

import platform
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert_throughput import decode_only, per_image_seconds, real_files  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore")
    from data.batch_conversion import file_fingerprint
    from data.image_conversion import convert_image

    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'encoding':32s} {'MB':>6s} {'hash ms':>13s} {'decode ms':>13s} {'convert ms':>13s} {'hash/convert':>12s}"
          "   (wall/CPU)")
    with tempfile.TemporaryDirectory() as temporary:
        for kind, path in real_files(Path(temporary)).items():
            size_mb = path.stat().st_size / 1e6
            hashing = per_image_seconds(file_fingerprint, [path] * 20)
            decode = per_image_seconds(decode_only, [path] * 3)
            convert = per_image_seconds(lambda item: convert_image(item, image_size=512), [path] * 3)
            print(f"{kind:32s} {size_mb:6.2f} {hashing[0] * 1e3:6.2f}/{hashing[1] * 1e3:6.2f} "
                  f"{decode[0] * 1e3:6.1f}/{decode[1] * 1e3:6.1f} {convert[0] * 1e3:6.1f}/{convert[1] * 1e3:6.1f} "
                  f"{hashing[1] / convert[1]:11.1%}")


if __name__ == "__main__":
    main()
