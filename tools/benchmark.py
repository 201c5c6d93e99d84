#!/usr/bin/env python
"""Speed and memory benchmark of any member against a fixed calibration workload.

    python tools/benchmark.py --config-file configs/cod/focus_dinov2_large.yaml [--size 512] [--dtype fp32|bf16]
        [--cast autocast|full] [--threads 2] [--runs 5] [--train] [--json OUT] [KEY VALUE ...]

Every timing is a ratio to a calibration workload timed in the same process, alternating with ours, so figures
from a shared or throttled machine stay comparable: timm's DINOv2-L/14 (`vit_large_patch14_reg4_dinov2`, random
weights, `img_size=518`), eval mode, fp32, `forward_features` on one 1x3x518x518 tensor.

* Inference: one `size` x `size` image through the member's test mapper (`INPUT.TEST_MAPPER_NAME`) and the model
  prepared as `TEST.INFERENCE_*` says (`--dtype`, `--cast`; `prepare_for_inference`).
* Training (`--train`): one step (forward, summed losses, backward; no optimizer) on a synthetic image and mask
  through the member's training mapper, under autocast in `--dtype` unless fp32. The batch holds one sample, or
  the member's `min_train_batch` (e.g. 2 for a BatchNorm after global pooling, which needs two values per
  channel) of different synthetic samples.
* Peak memory: the maximum RSS of a separate process that only builds the model (directly in the inference dtype,
  so no fp32 copy of the weights ever exists) and runs one forward pass or training step.
* Reduced precision: the binary masks (`mask`) and soft maps (`foreground`) of the prepared model are compared with
  the fp32 model's on real images (`--real-images` from `--real-images-dir`, default the ECSSD sample of
  `../shared/data` when it exists) and on a synthetic image; `mask_agreement` is the lowest.

The model has random weights unless `--weights` names a checkpoint (the config's `MODEL.WEIGHTS` is ignored);
nothing is downloaded. Figures measured
with it are kept in `docs/speed_memory.md`.
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TOOLS))

from malloc_policy import MALLOC_POLICIES, configure_malloc, default_malloc_policy  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CALIBRATION_MODEL = "vit_large_patch14_reg4_dinov2"
DEFAULT_REAL_IMAGES = ROOT.parent / "shared" / "data" / "sod" / "ECSSD-half" / "images"
RANDOM_WEIGHTS_CAVEAT = (
    "untrained weights: many pixels of a randomly initialised model sit near the mask threshold and flip under any "
    "rounding; a trained checkpoint agrees more"
)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def setup_benchmark_cfg(config_file, opts, device=None, train=False, weights=""):
    """The config of `config_file` + `opts`, on `device` (a cuda config falls back to the CPU without a GPU), with
    `MODEL.WEIGHTS` = `weights` ("" = random weights, whatever the config names)."""
    from focus.engine.trainer import setup_cfg

    opts = list(opts) + ["MODEL.WEIGHTS", weights]
    if device is not None:
        opts += ["MODEL.DEVICE", device]
    cfg = setup_cfg(config_file, opts, eval_only=not train)
    if device is None and cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg = setup_cfg(config_file, opts + ["MODEL.DEVICE", "cpu"], eval_only=not train)
    return cfg


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_benchmark_model(cfg, train=False, dtype="fp32", cast="autocast", pack=None, build_in_dtype=False):
    """Build `cfg`'s model (random weights, or `MODEL.WEIGHTS`) on `MODEL.DEVICE`: in train mode, or prepared for
    inference in `dtype` / `cast` (`pack`: None = `TEST.INFERENCE_PACK`).

    With `build_in_dtype` the parameters are created directly in `dtype` (no fp32 copy of the weights ever exists,
    for the peak-RSS process); the model's own constants (normalisation buffers) go back to fp32 as
    `prepare_for_inference` keeps them.
    """
    from detectron2.modeling import build_model

    from focus.engine.trainer import Trainer
    from focus.modeling.inference import prepare_for_inference

    torch_dtype = DTYPES[dtype]
    if build_in_dtype and not train and torch_dtype != torch.float32:
        with _default_dtype(torch_dtype):
            model = build_model(cfg)
        for name, buf in list(model.named_buffers(recurse=False)):
            if buf.is_floating_point():
                setattr(model, name, buf.float())
    else:
        model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Trainer.load_weights(cfg, model)
    if train:
        return model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    pack = cfg.TEST.INFERENCE_PACK if pack is None else pack
    return prepare_for_inference(model, dtype=dtype, cast=cast, pack=pack)


def build_calibration(device="cpu"):
    """The calibration workload: `(model, input)`; time `model.forward_features(input)` under no_grad."""
    import timm

    model = timm.create_model(CALIBRATION_MODEL, pretrained=False, img_size=518).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(0)).to(device)
    return model, x


def synthetic_image(size, seed=0):
    """A deterministic (size, size, 3) uint8 RGB image with smooth random blobs (natural-looking edges)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def synthetic_mask(size):
    """A (size, size) uint8 0/255 disc, the synthetic ground truth of the training step."""
    yy, xx = np.mgrid[:size, :size]
    return (((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2) < (size * 0.25) ** 2).astype(np.uint8) * 255


def synthetic_train_batch(cfg, size, seed=0):
    """One training sample as the member's training mapper (`INPUT.DATASET_MAPPER_NAME`) yields it from a
    synthetic image and mask written to a temporary folder."""
    import cv2

    from focus.data.mappers import build_mapper

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        image, mask = os.path.join(tmp, "x.png"), os.path.join(tmp, "x_mask.png")
        cv2.imwrite(image, synthetic_image(size, seed)[:, :, ::-1])
        cv2.imwrite(mask, synthetic_mask(size))
        record = {"file_name": image, "sem_seg_file_name": mask, "height": size, "width": size, "image_id": "x"}
        return [build_mapper(cfg, is_train=True)(record)]


def make_inference_step(model, cfg, size, with_mapper=False):
    """Closure running one prepared-model forward on a size x size image through the member's test mapper.

    `with_mapper`: the mapper runs inside each timed step, on two images in turn (a video's consecutive frames),
    so a temporal member's mapper estimates its flow from the previous frame on the fly, as the demo does.
    """
    from focus.data.mappers import build_mapper

    mapper = build_mapper(cfg, is_train=False)
    device = cfg.MODEL.DEVICE
    if with_mapper:
        frames = [synthetic_image(size, 0), np.roll(synthetic_image(size, 0), size // 64, axis=1)]
        mapper.map_image(frames[1])  # the stream's previous frame (and any lazily built estimator)
        count = [0]

        def step():
            count[0] += 1
            out = model([mapper.map_image(frames[count[0] % 2])])
            _sync(device)
            return out

        return step
    batch = [mapper.map_image(synthetic_image(size))]

    def step():
        out = model(batch)
        _sync(device)
        return out

    return step


def train_batch_size(model) -> int:
    """Images per benchmarked training step: the member's optional `min_train_batch` attribute, else 1."""
    return max(1, int(getattr(model, "min_train_batch", 1)))


def make_train_step(model, cfg, size, amp_dtype=None):
    """Closure running one training step (`train_batch_size(model)` synthetic samples, batch 1 for most members):
    forward, summed losses, backward.

    `amp_dtype` (e.g. bf16) runs the forward under autocast, as `SOLVER.AMP.ENABLED` does. Gradients are freed
    after each step (no optimizer: its state is the same for every implementation).
    """
    from focus.engine.trainer import store_frozen_in

    if amp_dtype is not None:
        store_frozen_in(model, amp_dtype)  # as the Trainer with SOLVER.AMP.ENABLED
    batch = [s for i in range(train_batch_size(model)) for s in synthetic_train_batch(cfg, size, seed=i)]
    params = [p for p in model.parameters() if p.requires_grad]
    device = cfg.MODEL.DEVICE
    device_type = torch.device(device).type

    def step():
        with torch.autocast(device_type=device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None,
                            cache_enabled=False):  # as AutocastTrainer
            losses = model(batch)
        loss = sum(losses.values())
        loss.backward()
        for p in params:
            p.grad = None
        _sync(device)
        return float(loss.detach())

    return step


def time_alternating(ours, calibration, runs, device="cpu", warmup=1):
    """Time `ours` and `calibration` alternately (`warmup` untimed pairs first).

    Returns `{"latency_s", "calibration_s", "ratio_to_calibration"}` (medians; the ratio is the median of the
    per-pair ratios) and the raw lists.
    """
    for _ in range(warmup):
        ours()
        calibration()
    t_ours, t_cal = [], []
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        ours()
        _sync(device)
        t1 = time.perf_counter()
        calibration()
        _sync(device)
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_cal.append(t2 - t1)
    ratios = [a / b for a, b in zip(t_ours, t_cal)]
    return {
        "latency_s": float(np.median(t_ours)),
        "calibration_s": float(np.median(t_cal)),
        "ratio_to_calibration": float(np.median(ratios)),
        "latencies_s": t_ours,
        "calibration_latencies_s": t_cal,
        "ratios": ratios,
    }


def _child_main(args):
    """Body of the peak-RSS measurement process: build, one step, print `{"peak_rss_mb": ...}`."""
    torch.set_num_threads(args.threads)
    import focus  # noqa: F401  (registrations)

    if args.cpu_kernel:
        _load_cpu_kernel()
    cfg = setup_benchmark_cfg(args.config_file, args.opts, args.device, args.train, args.weights)
    base_rss = _rss_mb()
    torch.manual_seed(0)
    model = build_benchmark_model(cfg, args.train, args.dtype, args.cast, build_in_dtype=True)
    built_rss = _rss_mb()
    if args.train:
        make_train_step(model, cfg, args.size, None if args.dtype == "fp32" else DTYPES[args.dtype])()
    else:
        make_inference_step(model, cfg, args.size)()
    out = {"peak_rss_mb": _rss_mb(), "rss_after_import_mb": base_rss, "rss_after_build_mb": built_rss}
    if torch.device(cfg.MODEL.DEVICE).type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RSS_RESULT " + json.dumps(out), flush=True)


def _rss_mb():
    """Peak RSS of this process so far (MiB). On Linux VmHWM of /proc/self/status: ru_maxrss of a process spawned
    by a large parent starts at the parent's RSS at fork time (the kernel keeps the pre-exec high-water mark)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 2.0**20 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure_peak_rss(args):
    """Spawn a fresh process that builds the model and runs one forward pass / training step; returns its
    `{"peak_rss_mb", "rss_after_import_mb", "rss_after_build_mb"}` (peak RSS so far at each point, MiB)."""
    cmd = [sys.executable, str(TOOLS / "benchmark.py"), "--rss-child", "--config-file", args.config_file,
           "--size", str(args.size), "--dtype", args.dtype, "--cast", args.cast, "--threads", str(args.threads)]
    if args.train:
        cmd.append("--train")
    if args.device:
        cmd += ["--device", args.device]
    if args.cpu_kernel:
        cmd.append("--cpu-kernel")
    if args.weights:
        cmd += ["--weights", args.weights]
    cmd += ["--malloc", args.malloc] + list(args.opts)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    for line in proc.stdout.splitlines():
        if line.startswith("RSS_RESULT "):
            return json.loads(line[len("RSS_RESULT "):])
    raise RuntimeError(f"peak-RSS process failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")


def mask_agreement(ref, out):
    """Compare two lists of eval outputs: `(pixel fraction where the masks agree, max |foreground diff|)`."""
    same, total, diff = 0, 0, 0.0
    for a, b in zip(ref, out):
        ma, mb = a["mask"], b["mask"]
        same += int(((ma > 0) == (mb > 0)).sum())
        total += ma.numel()
        diff = max(diff, float((a["foreground"].float() - b["foreground"].float()).abs().max()))
    return same / max(total, 1), diff


def real_image_inputs(cfg, folder, n):
    """Model inputs of the first `n` images (sorted) of `folder` through the member's test mapper."""
    from focus.data.io import IMAGE_EXTENSIONS, read_image
    from focus.data.mappers import build_mapper

    folder = Path(folder)
    if n <= 0 or not folder.is_dir():
        return []
    mapper = build_mapper(cfg, is_train=False)
    files = sorted(f for f in folder.iterdir() if f.name.lower().endswith(IMAGE_EXTENSIONS))[:n]
    return [mapper.map_image(read_image(str(f))) for f in files]


def _run_all(model, inputs):
    outs = []
    for inp in inputs:
        o = model([inp])[0]
        outs.append({"mask": o["mask"].cpu(), "foreground": o["foreground"].float().cpu()})
    return outs


def precision_agreement(cfg, args, inputs):
    """fp32 vs `args.dtype` (`args.cast`) of the same weights on `inputs`: `{"mask_agreement",
    "foreground_max_abs_diff", "images"}`."""
    torch.manual_seed(0)
    ref = _run_all(build_benchmark_model(cfg, dtype="fp32", pack=False), inputs)
    torch.manual_seed(0)
    out = _run_all(build_benchmark_model(cfg, dtype=args.dtype, cast=args.cast), inputs)
    agree, diff = mask_agreement(ref, out)
    return {"mask_agreement": agree, "foreground_max_abs_diff": diff, "images": len(inputs)}


def _load_cpu_kernel():
    from focus.layers.ms_deform_attn import load_cpu_extension

    return load_cpu_extension()


def op_comparison(args):
    """The deformable-attention CPU kernel vs the PyTorch reference on the FOCUS-L shapes at 512x512
    (`tools/benchmark_op.py`), in the benchmark dtype; None off CPU."""
    if torch.device(args.device or "cpu").type != "cpu":
        return None
    from benchmark_op import FOCUS_L_512_CASES, benchmark_cases

    dtype = torch.float32 if args.dtype == "fp32" else DTYPES[args.dtype]
    res = benchmark_cases(_load_cpu_kernel(), FOCUS_L_512_CASES, threads=args.threads, repeats=3, dtype=dtype)
    return {
        k: {"ref_fwd_s": r["ref_fwd"], "ext_fwd_s": r["ext_fwd"], "fwd_speedup": r["ref_fwd"] / r["ext_fwd"],
            "ref_fwdbwd_s": r["ref_fwdbwd"], "ext_fwdbwd_s": r["ext_fwdbwd"], "max_abs_diff": r["max_abs_diff"]}
        for k, r in res.items()
    }


def run_benchmark(args):
    """Run the whole benchmark described by the parsed `args`; returns the result dict."""
    torch.set_num_threads(args.threads)
    import focus  # noqa: F401

    if args.cpu_kernel:
        _load_cpu_kernel()
    from focus.layers.ms_deform_attn import ms_deform_attn_backend

    cfg = setup_benchmark_cfg(args.config_file, args.opts, args.device, args.train, args.weights)
    device = cfg.MODEL.DEVICE
    backend = ms_deform_attn_backend(device)
    result = {
        "config_file": args.config_file, "meta_architecture": cfg.MODEL.META_ARCHITECTURE, "opts": list(args.opts),
        "size": args.size, "dtype": args.dtype, "cast": args.cast, "threads": args.threads,
        "train": bool(args.train), "with_mapper": bool(args.with_mapper), "device": device, "runs": args.runs,
        "malloc": args.malloc,
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ms_deform_attn_backend": "pytorch" if backend is None else backend.__name__,
    }
    if not args.train and args.dtype != "fp32" and args.agreement:
        from focus.data.mappers import build_mapper

        synthetic = build_mapper(cfg, is_train=False).map_image(synthetic_image(args.size))
        parts = {"synthetic": precision_agreement(cfg, args, [synthetic])}
        real = real_image_inputs(cfg, args.real_images_dir, args.real_images)
        if real:
            parts["real_images"] = precision_agreement(cfg, args, real)
        result.update(parts)
        result["agreement_caveat"] = RANDOM_WEIGHTS_CAVEAT if not cfg.MODEL.WEIGHTS else ""
        result["mask_agreement"] = min(p["mask_agreement"] for p in parts.values())
        result["foreground_max_abs_diff"] = max(p["foreground_max_abs_diff"] for p in parts.values())
    torch.manual_seed(0)
    model = build_benchmark_model(cfg, args.train, args.dtype, args.cast)
    if args.train:
        ours = make_train_step(model, cfg, args.size, None if args.dtype == "fp32" else DTYPES[args.dtype])
        result["train_batch"] = train_batch_size(model)
    else:
        ours = make_inference_step(model, cfg, args.size, args.with_mapper)
    calib_model, calib_x = build_calibration(device)

    def calibration():
        with torch.no_grad():
            calib_model.forward_features(calib_x)

    result.update(time_alternating(ours, calibration, args.runs, device, warmup=args.warmup))
    del model, calib_model
    if args.rss:
        result.update(measure_peak_rss(args))
    if args.op:
        op = op_comparison(args)
        if op is not None:
            result["ms_deform_attn_op"] = op
    return result


def _summary(r):
    lines = [
        f"{r['meta_architecture']} {'train step (batch %d)' % r['train_batch'] if r['train'] else 'inference'} {r['size']}x{r['size']} {r['dtype']}"
        f"{'' if r['train'] or r['dtype'] == 'fp32' else ' (' + r['cast'] + ')'} on {r['device']}, "
        f"{r['threads']} threads, ms_deform_attn backend: {r['ms_deform_attn_backend']}, malloc {r['malloc']}",
        f"latency_s            {r['latency_s']:.3f} (calibration {r['calibration_s']:.3f} s, {r['runs']} pairs)",
        f"ratio_to_calibration {r['ratio_to_calibration']:.3f}",
    ]
    if "peak_rss_mb" in r:
        lines.append(f"peak_rss_mb          {r['peak_rss_mb']:.0f} (after build {r['rss_after_build_mb']:.0f})")
    if "mask_agreement" in r:
        lines.append(f"mask_agreement       {r['mask_agreement']:.5f}  "
                     f"foreground_max_abs_diff {r['foreground_max_abs_diff']:.4g}")
        for key in ("synthetic", "real_images"):
            if key in r:
                d = r[key]
                lines.append(f"  {key}: agreement {d['mask_agreement']:.5f}, foreground max diff "
                             f"{d['foreground_max_abs_diff']:.4g} ({d['images']} images)")
        if r.get("agreement_caveat"):
            lines.append(f"  caveat: {r['agreement_caveat']}")
    for case, d in r.get("ms_deform_attn_op", {}).items():
        lines.append(f"ms_deform_attn {case:<18} kernel {d['ext_fwd_s'] * 1e3:7.1f} ms vs reference "
                     f"{d['ref_fwd_s'] * 1e3:7.1f} ms (x{d['fwd_speedup']:.1f}), fwd+bwd x"
                     f"{d['ref_fwdbwd_s'] / d['ext_fwdbwd_s']:.1f}, max|diff| {d['max_abs_diff']:.2e}")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--size", type=int, default=512, help="square input image size (pixels)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="inference: TEST.INFERENCE_DTYPE; --train: autocast dtype")
    p.add_argument("--cast", choices=["autocast", "full"], default="autocast",
                   help="inference: TEST.INFERENCE_CAST (how a reduced --dtype applies)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="timed (ours, calibration) pairs")
    p.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    p.add_argument("--train", action="store_true",
                   help="time a training step (synthetic GT; batch 1, or the member's `min_train_batch`)")
    p.add_argument("--with-mapper", action="store_true",
                   help="time the test mapper too, on two alternating frames (a temporal member's flow on the fly)")
    p.add_argument("--device", default=None, help="overrides MODEL.DEVICE")
    p.add_argument("--weights", default="", help="checkpoint to load (default: random weights; the config's "
                   "MODEL.WEIGHTS is ignored)")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--real-images", type=int, default=20, help="real images for the reduced-precision agreement")
    p.add_argument("--real-images-dir", default=str(DEFAULT_REAL_IMAGES),
                   help="folder of real images for the agreement (default: the ECSSD sample of ../shared/data)")
    p.add_argument("--no-agreement", dest="agreement", action="store_false")
    p.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-RSS process")
    p.add_argument("--op", action="store_true",
                   help="also compare the deformable-attention CPU kernel with the reference (tools/benchmark_op.py)")
    p.add_argument("--cpu-kernel", action="store_true", help="load (compile) the deformable-attention CPU kernel")
    p.add_argument("--malloc", choices=MALLOC_POLICIES, default=None,
                   help="glibc malloc policy of both processes (tools/malloc_policy.py); default: keep for "
                        "inference, release with --train")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.malloc = args.malloc or default_malloc_policy(training=args.train)
    configure_malloc(args.malloc)
    if args.rss_child:
        _child_main(args)
        return None
    result = run_benchmark(args)
    print(_summary(result))
    if args.json:
        from focus.utils.file_io import atomic_write

        atomic_write(args.json, lambda f: json.dump(result, f, indent=2), mode="w")
    return result


if __name__ == "__main__":
    from focus.engine.cli import run_main

    sys.exit(run_main(main))
