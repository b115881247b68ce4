"""`cxrtune prepare`: a hospital DICOM folder or the NIH ChestX-ray14 release -> a prepared dataset."""
from __future__ import annotations

from search.cli.arguments import at_least, non_negative_int, number_at_least, positive_int

import argparse
import json


def register(subparsers) -> None:
    """Add this area's subcommands to the `cxrtune` parser."""
    parser = subparsers.add_parser(
        "prepare", help="convert a DICOM folder (hospital) or NIH ChestX-ray14 into a prepared dataset",
        description="Convert every input file into exactly one of accepted / rejected (with reason) / duplicate. "
                    "Restartable: re-running converts only what is not done yet.")
    parser.add_argument("input", help="folder of DICOM files (any depth), or of NIH PNGs (flat or images_NNN/images)")
    parser.add_argument("--out", required=True, help="prepared dataset folder to write (created if absent)")
    parser.add_argument("--format", choices=("hospital", "nih"), default="hospital", help="input layout (default hospital)")
    parser.add_argument("--labels", help="labels CSV: hospital image,labels[,patient_id] (default INPUT/labels.csv); "
                                         "NIH Data_Entry_2017*.csv[.gz] (default: found in INPUT)")
    parser.add_argument("--taxonomy", default="study", help="hospital only: built-in taxonomy name or a YAML path (default study)")
    parser.add_argument("--image-size", type=at_least(8), default=512, help="output side in px, square, padded (default 512)")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bits per pixel (default 8)")
    parser.add_argument("--min-category-images", type=non_negative_int, default=0,
                        help="drop (and report) categories with fewer accepted images than this (default 0)")
    parser.add_argument("--drop-least-class", action="store_true",
                        help="the study's least-class drop: leave out the category with the fewest accepted images "
                             "(study taxonomy 9 -> 8, NIH 14 -> 13); recorded in summary.json")
    parser.add_argument("--allow-modality", action="append", metavar="MODALITY",
                        help="hospital only: accept this DICOM Modality too (repeatable; default CR, DX, DR)")
    parser.add_argument("--any-modality", action="store_true", help="hospital only: accept every modality")
    parser.add_argument("--min-side", type=positive_int,
                        help="reject images with a side under this many px (default: max(32, image size / 4))")
    parser.add_argument("--max-aspect", type=number_at_least(1.0), default=2.0, help="reject images whose long/short side exceeds this (default 2.0)")
    parser.add_argument("--workers", type=positive_int, help="conversion processes (default: all cores)")
    parser.add_argument("--salt", help="secret for patient keys (default: $CXRTUNE_SALT, else a salt file)")
    parser.add_argument("--salt-file", help="where the salt is kept when neither --salt nor $CXRTUNE_SALT is set "
                                            "(default: OUT.patient-salt.SECRET beside OUT; created if absent)")
    parser.add_argument("--train-val-list", help="NIH only: train_val_list.txt[.gz] (default: found in INPUT)")
    parser.add_argument("--test-list", help="NIH only: test_list.txt[.gz] (default: found in INPUT)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="prepare the images present even when the labels name images that are absent")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    parser.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from data.prepare import DEFAULT_MODALITIES, prepare_hospital, prepare_nih

    common = dict(image_size=args.image_size, bit_depth=args.bit_depth, min_category_images=args.min_category_images,
                  workers=args.workers, salt=args.salt, salt_file=Path(args.salt_file) if args.salt_file else None,
                  min_side_px=args.min_side, max_aspect_ratio=args.max_aspect, allow_missing_images=args.allow_missing,
                  progress=not args.quiet, drop_least_class=args.drop_least_class)
    if args.format == "nih":
        summary = prepare_nih(args.input, args.labels, args.out, train_val_list=args.train_val_list,
                              test_list=args.test_list, **common)
    else:
        modalities = None if args.any_modality else tuple(DEFAULT_MODALITIES) + tuple(args.allow_modality or ())
        summary = prepare_hospital(args.input, args.labels or Path(args.input) / "labels.csv", args.out,
                                   taxonomy=args.taxonomy, allowed_modalities=modalities, **common)
    if not args.quiet:
        print(json.dumps(summary["counts"]))
    return 0
