#!/usr/bin/env python
"""Segment the foreground of images, folders, a video or the webcam with a FOCUS model.

    python tools/demo.py --input photos/ more/*.JPG one.png --output out/ --opts MODEL.WEIGHTS model.pth
    python tools/demo.py --input photos/ --output out/ --save mask soft --skip-existing
    python tools/demo.py --video-input clip.mp4 --output out/ --save overlay mask
    python tools/demo.py --webcam --output out/ --max-frames 300

Images: for every input `<rel>.<ext>` (its path relative to the folder or glob base it came from, or just its
name for a file) the requested kinds are written as `<output>/<rel>_{mask,soft,cutout,overlay}.png`: the
binary mask (0/255, the evaluator's `instances` mask), the soft foreground probability (8-bit), an RGBA cut-out
and an overlay. Videos/webcam: one `<output>/<name>_<kind>.mp4` (mp4v) per kind, same frame count and fps.
Every file is written atomically; `--skip-existing` resumes an interrupted run without recomputing.
Unreadable inputs are reported and skipped; the exit status is 1 if any input failed.

Differences from the official `demo/demo.py` (docs/focus.md#demo, docs/focus.md#q3, docs/focus.md#q35): the default
config is a repository-relative path, the saved mask is the evaluator's merged mask rather than the `sem_seg` argmax,
and `--video-input` / `--webcam` work.
"""
import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import focus  # noqa: E402,F401  (registers the components)
from focus.data.io import IMAGE_EXTENSIONS, read_image  # noqa: E402
from focus.engine import setup_cfg  # noqa: E402
from focus.engine.trainer import check_device  # noqa: E402
from focus.engine.cli import run_main  # noqa: E402
from focus.engine.predictor import Predictor  # noqa: E402
from focus.errors import UserError  # noqa: E402
from focus.utils.visualizer import OUTPUT_KINDS, render_video_frame, save_outputs  # noqa: E402
from malloc_policy import MALLOC_POLICIES, configure_malloc  # noqa: E402  (tools/malloc_policy.py)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/tiny/focus_tiny.yaml"


def get_parser():
    parser = argparse.ArgumentParser(
        description="FOCUS foreground segmentation demo", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", default=DEFAULT_CONFIG, metavar="FILE",
        help="config file; a relative path is looked up in the working directory, then in the repository",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, folders (recursive) or glob patterns")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", action="store_true", help="camera 0")
    parser.add_argument("--output", metavar="DIR", help="output folder (required except for --webcam)")
    parser.add_argument(
        "--save", nargs="+", default=None, metavar="KIND",
        help=f"outputs to write, as separate words or comma-separated ({', '.join(OUTPUT_KINDS)}; images: "
        "default all four; video/webcam: default overlay)",
    )
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs all exist")
    parser.add_argument("--max-frames", type=int, default=0, help="video/webcam: stop after N frames (0 = all)")
    parser.add_argument(
        "--num-threads", type=int, default=0,
        help="CPU threads for PyTorch (0 = its default); 1 is often fastest on a busy or small machine",
    )
    parser.add_argument(
        "--malloc", choices=MALLOC_POLICIES, default="keep",
        help="glibc malloc policy: keep (reuse freed activation memory, no page faults per image) or default",
    )
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return parser


def resolve_config(path):
    """A config path as given if it exists, else relative to the repository root."""
    if os.path.isfile(path) or os.path.isabs(path):
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.is_file() else path


def _is_image(path):
    return path.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(path).startswith(".")


def _walk_images(folder):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if _is_image(name):
                yield os.path.join(root, name)


def _glob_base(pattern):
    """The leading directories of a glob pattern that contain no wildcard."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return os.path.join(*parts) if parts else "."


def collect_inputs(specs, exclude=None):
    """Expand `--input` entries into `[(file, relative output stem)]` and a list of `(spec, reason)` errors.

    Folders are searched recursively and glob matches filtered by image extension (any case); a file named
    explicitly is taken whatever its extension. The output stem keeps the sub-folder structure below the
    folder (or the glob's wildcard-free base); two inputs that would write the same outputs are an error.
    Files below the folder `exclude` (the output folder, when it lies inside an input folder) are ignored.
    """
    found, errors = [], []
    for spec in specs:
        if os.path.isdir(spec):
            images = [(p, os.path.relpath(p, spec)) for p in _walk_images(spec)]
            if not images:
                errors.append((spec, f"no image ({', '.join(IMAGE_EXTENSIONS)}) in this folder"))
            found += images
        elif os.path.isfile(spec):
            found.append((spec, os.path.basename(spec)))
        elif glob.has_magic(spec):
            base = _glob_base(spec)
            matches = []
            for match in sorted(glob.glob(spec, recursive=True)):
                if os.path.isdir(match):
                    matches += list(_walk_images(match))
                elif _is_image(match):
                    matches.append(match)
            if not matches:
                errors.append((spec, "no image matches this pattern"))
            found += [(p, os.path.relpath(p, base)) for p in matches]
        else:
            errors.append((spec, "no such file or folder"))
    excluded = os.path.join(os.path.realpath(exclude), "") if exclude else None
    jobs, seen_files, seen_stems = [], set(), {}
    for path, rel in found:
        real = os.path.realpath(path)
        if real in seen_files or (excluded and real.startswith(excluded)):
            continue
        seen_files.add(real)
        stem = os.path.splitext(rel)[0]
        if stem in seen_stems:
            errors.append((path, f"its outputs would overwrite those of {seen_stems[stem]}"))
            continue
        seen_stems[stem] = path
        jobs.append((path, stem))
    return jobs, errors


def _report(path, reason):
    tqdm.write(f"FAILED {path}: {reason}", file=sys.stderr)


class _LazyPredictor:
    """Builds the model on first use, so a fully resumed (`--skip-existing`) run never loads it."""

    def __init__(self, cfg):
        self.cfg, self._predictor = cfg, None

    def __call__(self, image):
        if self._predictor is None:
            self._predictor = Predictor(self.cfg)
        return self._predictor(image)


def run_images(args, predictor):
    kinds = args.save or list(OUTPUT_KINDS)
    jobs, errors = collect_inputs(args.input, exclude=args.output)
    for spec, reason in errors:
        _report(spec, reason)
    if not jobs:
        raise UserError(f"--input {' '.join(args.input)}: no image to process (extensions "
                        f"{', '.join(IMAGE_EXTENSIONS)}, any case)")
    done = skipped = 0
    failed = len(errors)
    for path, stem in tqdm(jobs, desc="images", unit="img", file=sys.stderr):
        outputs = {kind: os.path.join(args.output, f"{stem}_{kind}.png") for kind in kinds}
        if args.skip_existing and all(os.path.isfile(p) for p in outputs.values()):
            skipped += 1
            continue
        try:
            image = read_image(path)
        except (OSError, ValueError) as e:  # focus.errors.BadFileError is a ValueError
            _report(path, e)
            failed += 1
            continue
        prediction = predictor(image)
        try:
            save_outputs(outputs, image, prediction)
        except OSError as e:
            _report(path, f"cannot write outputs: {e}")
            failed += 1
            continue
        done += 1
    return done, skipped, failed


class _VideoSink:
    """One mp4v `cv2.VideoWriter` per output kind, each written to a temporary name and moved into place
    by `commit()` (a killed run leaves no half-written video under the final name)."""

    def __init__(self, paths, fps):
        self.paths, self.fps, self.writers, self.tmps = paths, fps, {}, {}

    def write(self, frames_rgb):
        for kind, frame in frames_rgb.items():
            if kind not in self.writers:
                path = self.paths[kind]
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".mp4", dir=os.path.dirname(os.path.abspath(path)))
                os.close(fd)
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
                self.tmps[kind] = tmp
                if not writer.isOpened():
                    raise OSError(f"{path}: cannot open an mp4v video writer ({w}x{h} at {self.fps} fps)")
                self.writers[kind] = writer
            self.writers[kind].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def commit(self):
        for kind, writer in self.writers.items():
            writer.release()
            os.replace(self.tmps.pop(kind), self.paths[kind])
        self.writers = {}

    def discard(self):
        for writer in self.writers.values():
            writer.release()
        for tmp in self.tmps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.writers, self.tmps = {}, {}


def _process_stream(capture, predictor, kinds, sink, total, max_frames, desc):
    """Predict every frame of an opened `cv2.VideoCapture`, feeding the sink; returns the frame count."""
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    count = 0
    with tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr) as bar:
        while not max_frames or count < max_frames:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            prediction = predictor(rgb)
            sink.write({kind: render_video_frame(kind, rgb, prediction) for kind in kinds})
            count += 1
            bar.update(1)
    return count


def _video_paths(output, name, kinds):
    return {kind: os.path.join(output, f"{name}_{kind}.mp4") for kind in kinds}


def run_video(args, predictor):
    kinds = args.save or ["overlay"]
    path = args.video_input
    paths = _video_paths(args.output, Path(path).stem, kinds)
    if args.skip_existing and all(os.path.isfile(p) for p in paths.values()):
        return 0, 1, 0
    capture = cv2.VideoCapture(path)
    if not os.path.isfile(path) or not capture.isOpened():
        _report(path, "cannot open the video (missing file or unsupported format)")
        return 0, 0, 1
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    sink = _VideoSink(paths, fps)
    try:
        count = _process_stream(capture, predictor, kinds, sink, total, args.max_frames, Path(path).name)
        sink.commit()
    finally:
        sink.discard()
        capture.release()
    if count == 0:
        _report(path, "no frame could be decoded")
        return 0, 0, 1
    return 1, 0, 0


def run_webcam(args, predictor):
    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        raise SystemExit("--webcam: no camera could be opened at index 0 (cv2.VideoCapture(0) failed)")
    kinds = args.save or ["overlay"]
    try:
        if args.output:
            sink = _VideoSink(_video_paths(args.output, "webcam", kinds), capture.get(cv2.CAP_PROP_FPS) or 30.0)
            try:
                _process_stream(capture, predictor, kinds, sink, 0, args.max_frames, "webcam")
            except KeyboardInterrupt:  # Ctrl-C ends the recording; keep what was captured
                pass
            sink.commit()
            return 1, 0, 0
        window = "FOCUS (Esc to quit)"
        count = 0
        while not args.max_frames or count < args.max_frames:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            frame = render_video_frame(kinds[0], rgb, predictor(rgb))
            try:
                cv2.imshow(window, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            except cv2.error as e:
                raise SystemExit(f"--webcam: cannot open a window ({e.msg.strip()}); pass --output DIR") from None
            count += 1
            if cv2.waitKey(1) == 27:
                break
        cv2.destroyAllWindows()
        return 1, 0, 0
    finally:
        capture.release()


def parse_save(parser, values):
    """`--save` as separate words and/or comma-separated lists (`mask soft`, `mask,soft`, `mask, soft`)."""
    if values is None:
        return None
    kinds = [k.strip().lower() for v in values for k in v.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown or not kinds:
        parser.error(f"--save: unknown output kind {', '.join(unknown) or repr(' '.join(values))}; "
                     f"choose from {', '.join(OUTPUT_KINDS)}")
    return list(dict.fromkeys(kinds))


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    args.save = parse_save(parser, args.save)
    if not args.webcam and not args.output:
        get_parser().error("--output is required with --input and --video-input")
    config_file = resolve_config(args.config_file)
    if not os.path.isfile(config_file):
        get_parser().error(f"--config-file: config file not found: {args.config_file}")
    cfg = check_device(setup_cfg(config_file, args.opts, eval_only=True))
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    configure_malloc(args.malloc)
    predictor = _LazyPredictor(cfg)
    start = time.perf_counter()
    if args.input:
        done, skipped, failed = run_images(args, predictor)
    elif args.video_input:
        done, skipped, failed = run_video(args, predictor)
    else:
        done, skipped, failed = run_webcam(args, predictor)
    print(f"done {done}, skipped {skipped}, failed {failed} ({time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
