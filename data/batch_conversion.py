"""Convert many files in parallel, restartably: each finished file is one line in a progress record.

A run writes every PNG atomically (temporary file + rename) before it appends that file's line to
`.cxrtune-progress.jsonl` (flushed line by line), so after an interruption every recorded file has its
output and an unrecorded one is simply converted again. A file counts as done when its size and content
hash (sha256 of the file's bytes), the input folder and the conversion settings all match its record:
re-running on unchanged input converts nothing, and a corrected copy of the data never reuses an old PNG,
whatever its modification time says.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from data.dicom import UnusableImageError, decode_stored_values, display_image, read_dicom_header
from data.dicom_header import OTHER_VALUE
from data.errors import DataError
from data.image_conversion import (PNG_SUFFIXES, fit_square, pixel_content_hash, read_png_values, to_bit_depth,
                                   write_png_atomic)
from data.privacy import patient_key
from data.worker_pool import convert_in_pool

PROGRESS_FILE = ".cxrtune-progress.jsonl"
LOCK_FILE = ".cxrtune-prepare.lock"


@dataclass(frozen=True)
class ConversionSettings:
    image_size: int
    bit_depth: int
    allowed_modalities: tuple[str, ...] | None  # None accepts any modality
    min_side_px: int
    max_aspect_ratio: float
    salt: str
    salt_check: str  # privacy.salt_fingerprint(salt): in the record instead of the salt
    input_dir: str = ""  # absolute: the same relative path in another folder is another file

    def record_key(self) -> dict[str, Any]:
        """What, besides the input file, decides the output: a change restarts the conversion from zero."""
        key = asdict(self)
        key.pop("salt")
        key["allowed_modalities"] = list(self.allowed_modalities) if self.allowed_modalities else None
        return key


@dataclass(frozen=True)
class ConversionTask:
    source_path: str       # relative to the input folder, '/'-separated
    absolute_path: str
    fingerprint: str       # "<size bytes>:<sha256 of the file's bytes>" (file_fingerprints)
    image_id: str = ""     # given (NIH Image Index) or derived (SOPInstanceUID, else content hash)


def file_fingerprint(path: Path) -> str:
    """"<size>:<sha256 of the bytes>": a file is reused only when its content is the same, whatever its
    modification time (a corrected copy made with `cp -p` or rsync keeps the old one)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest = hashlib.file_digest(handle, "sha256")  # hashlib releases the GIL on large blocks
    return f"{size}:{digest.hexdigest()}"


def file_fingerprints(paths: list[Path], *, threads: int = 4) -> list[str]:
    """file_fingerprint of each path, `threads` at a time (reading and hashing overlap on several cores)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(file_fingerprint, paths))


def image_file_name(image_id: str) -> str:
    """images/<name>.png for an id: ':' and '/' are not file-name safe; a trailing .png is not repeated."""
    name = image_id.replace(":", "-").replace("/", "_")
    return name if name.lower().endswith(".png") else f"{name}.png"


def convert_one(task: ConversionTask, settings: ConversionSettings, images_dir: str) -> dict[str, Any]:
    """Convert one file; return its record (never pixels, never a raw patient id)."""
    record: dict[str, Any] = {"source_path": task.source_path, "fingerprint": task.fingerprint}
    try:
        record.update(_convert_checked(task, settings, Path(images_dir)))
        record["status"] = "converted"
    except UnusableImageError as rejection:
        record.update(status="rejected", reason=rejection.reason)
    except DataError:
        raise  # the output cannot be written (disk full, say): stop, whatever the file
    except Exception as error:
        # A malformed file this code did not foresee (a broken LUT, a pydicom parser error on a mangled
        # header) must not stop a run of thousands: it is rejected and counted. Only the error's type is
        # kept: its message may quote header values.
        record.update(status="rejected", reason=f"conversion failed ({type(error).__name__})")
    return record


def _convert_checked(task: ConversionTask, settings: ConversionSettings, images_dir: Path) -> dict[str, Any]:
    path = task.absolute_path
    if Path(path).suffix.lower() in PNG_SUFFIXES:
        stored, top, facts = read_png_values(path)
        _check_geometry(path, facts, settings)
        image = stored.astype("float32") / top
    else:
        dataset, facts = read_dicom_header(path)
        modality = facts["modality"]
        if settings.allowed_modalities and modality not in settings.allowed_modalities:
            shown = {"": "missing", OTHER_VALUE: "other (not a DICOM defined term)"}.get(modality, modality)
            raise UnusableImageError(path, f"modality {shown} not allowed; accepted: "
                                           f"{', '.join(settings.allowed_modalities)} (see --allow-modality)")
        _check_geometry(path, facts, settings)
        stored = decode_stored_values(dataset, path)
        image = display_image(stored, dataset, facts)
    content_hash = pixel_content_hash(stored)
    image_id = task.image_id or facts.get("sop_instance_uid") or f"sha256:{content_hash[:32]}"
    file_name = image_file_name(image_id)
    square = to_bit_depth(fit_square(image, settings.image_size), settings.bit_depth)
    try:
        write_png_atomic(square, images_dir / file_name)
    except OSError as error:
        raise DataError(f"cannot write {images_dir / file_name}: {error.strerror or error}; "
                        "free space or fix the permissions of --out, then re-run (finished files are kept)") from error
    return {
        "image_id": image_id, "image_path": f"images/{file_name}", "content_hash": content_hash,
        "patient_key": patient_key(facts.get("patient_id", ""), settings.salt),
        "view_position": facts.get("view_position", ""), "modality": facts.get("modality", ""),
        "original_rows": facts["rows"], "original_cols": facts["cols"],
        "pixel_spacing_row_mm": facts.get("pixel_spacing_row_mm"), "pixel_spacing_col_mm": facts.get("pixel_spacing_col_mm"),
        "sex": facts.get("sex", ""), "age_band": facts.get("age_band", ""),  # coarse demographics only
    }


def _check_geometry(path, facts: dict[str, Any], settings: ConversionSettings) -> None:
    rows, cols = facts["rows"], facts["cols"]
    if min(rows, cols) < settings.min_side_px:
        raise UnusableImageError(path, f"too small ({rows}x{cols} px); accepted: both sides >= "
                                       f"{settings.min_side_px} px (see --min-side)")
    aspect = max(rows, cols) / min(rows, cols)
    if aspect > settings.max_aspect_ratio:
        raise UnusableImageError(path, f"extreme aspect ratio {aspect:.2f} ({rows}x{cols} px); accepted: <= "
                                       f"{settings.max_aspect_ratio:g} (see --max-aspect)")


def read_progress(out_dir: Path, settings: ConversionSettings) -> dict[str, dict[str, Any]]:
    """source_path -> record of a previous run with the same settings (a torn last line is ignored)."""
    path = out_dir / PROGRESS_FILE
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    try:
        if not lines or json.loads(lines[0]).get("settings") != settings.record_key():
            return {}
    except json.JSONDecodeError:
        return {}
    records = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the run was killed
        records[record["source_path"]] = record
    return records


def convert_all(tasks: list[ConversionTask], settings: ConversionSettings, out_dir: Path, *, workers: int,
                progress: bool = True, on_record: Callable[[dict], None] | None = None) -> dict[str, dict[str, Any]]:
    """Convert every task not already recorded; return source_path -> record for all tasks.

    Files are converted in `workers` processes (see data/worker_pool.py).
    """
    from tqdm import tqdm

    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    previous = read_progress(out_dir, settings)
    records = {task.source_path: previous[task.source_path] for task in tasks
               if task.source_path in previous and previous[task.source_path]["fingerprint"] == task.fingerprint}
    pending = [task for task in tasks if task.source_path not in records]
    progress_path = out_dir / PROGRESS_FILE
    if not previous:
        progress_path.write_text(json.dumps({"settings": settings.record_key()}) + "\n")
    bar = tqdm(total=len(pending), unit="img", desc="converting", disable=not progress or None, leave=False)
    with progress_path.open("a") as ledger:
        if not _ends_with_newline(progress_path):
            ledger.write("\n")  # end a line torn by a kill, so the next record starts on its own line
        def keep(record: dict[str, Any]) -> None:
            ledger.write(json.dumps(record) + "\n")
            ledger.flush()
            records[record["source_path"]] = record
            bar.update(1)
            if on_record:
                on_record(record)

        # Always in worker processes, even with one worker: a decoder that crashes on a file then costs
        # that file, not the run (see data/worker_pool.py).
        convert_in_pool(pending, convert_one, settings, str(images_dir), max(1, workers), keep)
    bar.close()
    return records


@contextmanager
def output_lock(out_dir: Path):
    """One prepare at a time per output folder: two would interleave the restart record.

    A lock left by a killed run (its process gone) is taken over.
    """
    path = out_dir / LOCK_FILE
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = path.read_text().strip()
            if holder.isdigit() and _process_alive(int(holder)):
                raise DataError(f"another prepare (process {holder}) is writing {out_dir}; wait for it, "
                                f"or delete {path} if that process is not a prepare") from None
            path.unlink(missing_ok=True)
    else:
        raise DataError(f"cannot take the lock {path}; delete it if no prepare is running")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
