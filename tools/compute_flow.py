#!/usr/bin/env python
"""Render optical-flow images for video sequences with torchvision RAFT (any device, no CUDA-only code).

    python tools/compute_flow.py --input DAVIS/JPEGImages/480p --output DAVIS/Flow/480p --weights raft_small_C_T_V2-01064c6d.pth
    python tools/compute_flow.py --input frames/ --output flow/ --model raft_large --weights raft_large_C_T_SKHT_V2-ff5fadd5.pth
    python tools/compute_flow.py --video-input clip.mp4 --output clip_flow/ --weights W.pth

`--input` is one folder of frames (a sequence) or a folder of sequence folders (every subfolder holding images;
with `--frames-subdir frames`, `<root>/<seq>/frames`). For frame t the flow from t to t+1 (FSNet's pairing) is
rendered in the Middlebury colour coding (`torchvision.utils.flow_to_image`, the coding FSNet was trained on) and
saved as `<output>[/<seq>]/<stem of t>.png`; the last frame gets the negated flow back to t-1 (in its own
coordinates), or nothing with `--last skip` (the official test loader never predicts it). A video is decoded to
frames named `%05d` first. Files are written atomically and existing ones are skipped, so an interrupted run
resumes. Weights: the RAFT state dicts torchvision publishes, downloaded by the user (nothing is downloaded
here); without `--weights` the model is random (tests only).
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from focus.data.io import IMAGE_EXTENSIONS, list_files_by_stem, read_image  # noqa: E402
from focus.modeling.flow import RAFT_MODELS, FlowEstimator, render_flow  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="a folder of frames, or a folder of sequence folders")
    src.add_argument("--video-input", help="a video file")
    p.add_argument("--output", required=True, help="output folder (one subfolder per sequence)")
    p.add_argument("--frames-subdir", default="", help="frames live in <seq>/<this> (e.g. 'frames')")
    p.add_argument("--model", choices=RAFT_MODELS, default="raft_small")
    p.add_argument("--weights", default="", help="local RAFT state dict (torchvision's released file)")
    p.add_argument("--num-flow-updates", type=int, default=12)
    p.add_argument("--max-size", type=int, default=1024, help="estimate at most at this longer side")
    p.add_argument("--last", choices=("backward", "skip"), default="backward",
                   help="last frame: negated backward flow (default) or no flow image (official)")
    p.add_argument("--device", default="cpu")
    return p


def find_sequences(root, frames_subdir=""):
    """[(name, frames_dir)]: `root` itself if it holds images, else every subfolder that does."""
    root = Path(root)
    if not frames_subdir and list_files_by_stem(root, IMAGE_EXTENSIONS):
        return [("", root)]
    seqs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        frames = sub / frames_subdir if frames_subdir else sub
        if frames.is_dir() and list_files_by_stem(frames, IMAGE_EXTENSIONS):
            seqs.append((sub.name, frames))
    if not seqs:
        raise SystemExit(f"no frames found under {root}")
    return seqs


def decode_video(path, out_dir):
    """Decode every frame of `path` to `<out_dir>/%05d.png` (existing files kept); returns out_dir."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        target = out_dir / f"{i:05d}.png"
        if not target.exists():
            write_image(target, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out_dir


def write_image(path, rgb):
    """Atomic RGB PNG write (temporary file + os.replace)."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    tmp = path.with_name(f".tmp_{os.getpid()}_{path.name}")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def flow_jobs(sequences, output, last="backward"):
    """[(frame t, partner frame, negate, output png)] for every frame still missing its flow image."""
    jobs = []
    for name, frames_dir in sequences:
        frames = list(list_files_by_stem(frames_dir, IMAGE_EXTENSIONS).items())
        out_dir = Path(output) / name if name else Path(output)
        for i, (stem, path) in enumerate(frames):
            if i + 1 < len(frames):
                partner, negate = frames[i + 1][1], False
            elif last == "backward" and i > 0:
                partner, negate = frames[i - 1][1], True
            else:
                continue
            target = out_dir / f"{stem}.png"
            if not target.exists():
                jobs.append((path, partner, negate, target))
    return jobs


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.video_input:
        frames_dir = Path(args.output) / "_frames"
        decode_video(args.video_input, frames_dir)
        sequences, output = [("", frames_dir)], Path(args.output) / "flow"
    else:
        sequences, output = find_sequences(args.input, args.frames_subdir), Path(args.output)
    jobs = flow_jobs(sequences, output, args.last)
    if not jobs:
        print(f"all flow images already in {output}", file=sys.stderr)
        return 0
    estimator = FlowEstimator(args.model, args.weights, args.num_flow_updates, args.max_size, args.device)
    for frame, partner, negate, target in tqdm(jobs, desc="flow", unit="frame", file=sys.stderr):
        flow = estimator(read_image(frame), read_image(partner))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, render_flow(-flow if negate else flow))
    print(f"{len(jobs)} flow images written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
