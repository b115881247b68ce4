"""`cxrtune synth`: write a synthetic hospital (DICOM) or NIH-style (PNG) dataset."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from search.cli.arguments import at_least, positive_int


def register(subparsers) -> None:
    """Add `synth` to the `cxrtune` parser."""
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic chest radiographs (hospital DICOM or NIH-style PNG)",
        description="Write synthetic chest radiographs in the layout of a hospital DICOM export "
                    "(--format hospital: DICOM files + labels.csv) or of NIH ChestX-ray14 "
                    "(--format nih: images/*.png + Data_Entry_2017.csv + train_val_list.txt/test_list.txt). "
                    "The same --seed writes the same files.",
    )
    parser.add_argument("--format", required=True, choices=("hospital", "nih"), dest="dataset_format",
                        help="hospital: DICOM + labels.csv; nih: PNG + NIH's tables")
    parser.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    parser.add_argument("--n-images", type=positive_int, default=300,
                        help="distinct radiographs to write (hospital adds duplicates and 2 outliers; default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--image-size", type=at_least(16), default=256, help="side of the square rendering in px (default 256)")
    parser.add_argument("--prevalence", choices=("study", "balanced", "study-multilabel"), default="study",
                        help="study: the reference set's table, one category per image (68.3%% normal; NIH: NIH's "
                             "counts); balanced: 30%% normal, categories equally likely; study-multilabel (hospital): "
                             "the study's normal share, 1-3 findings per abnormal image (default study)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier synthetic output in --out (refused for other folders)")
    parser.add_argument("--fainter-for-sex", default=None, metavar="FINDING:SEX:STRENGTH",
                        help="plant a subgroup effect: draw FINDING (an NIH finding or a study category) at "
                             "STRENGTH (0 invisible .. 1 as usual) in patients of SEX (F or M), e.g. Cardiomegaly:F:0.2")
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON")
    parser.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from data.synthetic import write_hospital, write_nih

    writer = write_hospital if args.dataset_format == "hospital" else write_nih
    start = time.perf_counter()
    summary = writer(args.out, n_images=args.n_images, seed=args.seed, image_size=args.image_size,
                     prevalence=args.prevalence, overwrite=args.overwrite, fainter_for_sex=args.fainter_for_sex)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {summary['n_files']} files ({summary['n_images']} distinct radiographs, "
          f"{summary['n_patients']} patients) to {summary['out_dir']} in {seconds:.1f} s; "
          f"labels: {summary['labels_csv']}")
    if args.dataset_format == "hospital":
        print(f"  {len(summary['duplicates'])} exact duplicates and {len(summary['outliers'])} outliers "
              f"({', '.join(summary['outliers'].values()) or 'none'}) for prepare to report")
    else:
        print(f"  {summary['n_test_images']} images in test_list.txt (patient-disjoint from train_val_list.txt)")
    counts = ", ".join(f"{name} {count}" for name, count in summary["label_counts"].items())
    print(f"  labels: {counts}")
    return 0
