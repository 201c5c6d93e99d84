#!/usr/bin/env python
"""Score a folder of predicted masks against a folder of GT masks.

    python tools/evaluate_folder.py --pred DIR --gt DIR [--protocol standard|focus|dis|vos] [--task TASK]
                                    [--output FILE.json]

Predictions (8-bit soft maps or binary PNGs) and GT masks are matched by file stem, any extensions.
Predictions whose size differs from the GT are resized to it (bilinear) and counted; missing and extra files
are listed. ``standard`` reports ``Smeasure, wFmeasure, MAE, adpEm, meanEm, maxEm, adpFm, meanFm, maxFm``
(+ ``BER, IoU, Dice`` for sd/dbd, ``F1, AUC`` for fd, all of them without ``--task``); ``focus`` reports the
official ``MAE, SM, EM, WFM, BER, F1, AUC, FM`` on binarised predictions (BER in the official 0.75 x scale);
``dis`` reports BiRefNet's DIS5K table ``maxFm, wFmeasure, MAE, Smeasure, meanEm, HCE, maxEm, meanFm, adpEm,
adpFm, mBA, maxBIoU, meanBIoU``. ``vos`` scores ``<pred>/<sequence>/<frame>.png`` against
``<gt>/<sequence>/<frame>.png`` (or ``<gt>/<sequence>/masks/<frame>.png``): DAVIS-2016 ``J_mean, J_recall,
J_decay, F_mean, F_recall, F_decay, J&F_mean`` (means over sequences, per-sequence values in the JSON) and the
standard metrics averaged per sequence (V-SOD; ``--no-vsod`` skips them). See docs/evaluation.md.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from focus.data.catalog import TASKS  # noqa: E402
from focus.engine.cli import run_main  # noqa: E402
from focus.evaluation.folder import format_table, json_safe, score_folder, score_video_folder  # noqa: E402
from focus.utils.file_io import atomic_write  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True, help="folder of predictions (8-bit soft maps or binary masks)")
    ap.add_argument("--gt", required=True, help="folder of GT masks (foreground > 128)")
    ap.add_argument("--protocol", default="standard", choices=["standard", "focus", "dis", "vos"])
    ap.add_argument("--task", default=None, choices=list(TASKS), help="selects the extra standard metrics")
    ap.add_argument("--output", default=None, help="write the result JSON here")
    ap.add_argument("--name", default=None, help="row label of the printed table (default: the GT folder)")
    ap.add_argument("--no-vsod", action="store_true", help="vos: J and F only (skip the slower V-SOD metrics)")
    ap.add_argument("--exact-decay-bins", action="store_true",
                    help="vos: exact decay bins instead of the official uint8 ones (differ beyond 256 frames)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.protocol == "vos":
        res = score_video_folder(args.pred, args.gt, vsod=not args.no_vsod, uint8_ids=not args.exact_decay_bins)
        label = args.name or Path(args.gt).resolve().name or args.gt
        title = f"vos protocol, {res['num_sequences']} sequences, {res['num_images']} evaluated frames"
        rows = [(s, r) for s, r in res["per_sequence"].items()] + [(label, res["metrics"])]
        print(format_table(rows, res["metric_names"], title=title))
    else:
        res = score_folder(args.pred, args.gt, protocol=args.protocol, task=args.task)
        label = args.name or Path(args.gt).resolve().parent.name or args.gt
        title = f"{args.protocol} protocol, {res['num_images']} images"
        if args.protocol == "focus":
            title += "  [official names; BER = 0.75 x true BER in %, docs/focus.md#q1]"
        print(format_table([(label, res["metrics"])], res["metric_names"], title=title))
    if res["resized"]:
        print(f"{len(res['resized'])} prediction(s) resized to the GT size: {res['resized'][:10]}")
    if res["missing"]:
        print(f"{len(res['missing'])} GT file(s) without a prediction (not scored): {res['missing'][:10]}")
    if res["extra"]:
        print(f"{len(res['extra'])} prediction(s) without a GT (ignored): {res['extra'][:10]}")
    if res.get("excluded"):
        print(f"{len(res['excluded'])} image(s) excluded (unreadable prediction or GT): "
              + "; ".join(f"{k}: {v}" for k, v in list(res["excluded"].items())[:10]))
    if res.get("undefined_per_image"):
        print(f"{len(res['undefined_per_image'])} image(s) with an undefined metric (excluded from its mean): "
              f"{res['undefined_per_image'][:10]}")
    if args.output:
        atomic_write(args.output, lambda fh: json.dump(json_safe(res), fh, indent=1), mode="w")
        print(f"wrote {args.output}")
    return res


if __name__ == "__main__":
    sys.exit(run_main(main))
