"""Speed and memory benchmark of a FOCUS model against a fixed calibration workload (`tools/benchmark.py`).

Every timing is reported as a ratio to a calibration workload timed in the same process, alternating with ours,
so figures from a shared or throttled machine stay comparable: timm's DINOv2-L/14 (`vit_large_patch14_reg4_dinov2`,
random weights, `img_size=518`), eval mode, fp32, `forward_features` on one 1x3x518x518 tensor. Peak memory is the
maximum RSS of a separate process that only builds the model (directly in the target dtype) and runs one forward
pass or training step. For reduced precision the binary masks (`instances.pred_masks`) and `sem_seg` are compared
with the fp32 result of the same weights: the official golden weights (`configs/tiny/focus_golden.yaml`) on the golden
inputs and on real ECSSD images, and the model under test on the same real images; `mask_agreement` is the lowest.

The model is always built with random weights (`MODEL.WEIGHTS` is ignored, nothing is downloaded).
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .runtime import MALLOC_POLICIES, configure_malloc, default_malloc_policy

__all__ = [
    "DTYPES",
    "CALIBRATION_MODEL",
    "build_calibration",
    "build_benchmark_model",
    "synthetic_image",
    "synthetic_train_batch",
    "make_inference_step",
    "make_train_step",
    "time_alternating",
    "measure_peak_rss",
    "mask_agreement",
    "golden_agreement",
    "real_image_agreement",
    "run_benchmark",
    "main",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CALIBRATION_MODEL = "vit_large_patch14_reg4_dinov2"
ROOT = Path(__file__).resolve().parents[2]
RANDOM_WEIGHTS_CAVEAT = (
    "untrained weights: the golden weights are the official initialisation with noise and the model under test is "
    "randomly initialised, so many pixels sit near the mask threshold and flip under any rounding; a trained "
    "checkpoint would agree more"
)


def _shared(env, name):
    return Path(os.environ.get(env, ROOT.parent / "shared" / name))


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _setup_cfg(config_file, opts, device=None, dtype="fp32", train=False, cast="autocast"):
    from .trainer import setup_cfg

    opts = list(opts) + ["MODEL.WEIGHTS", "", "MODEL.FOCUS.INFERENCE_DTYPE", dtype,
                         "MODEL.FOCUS.INFERENCE_CAST", cast]
    if device is not None:
        opts += ["MODEL.DEVICE", device]
    cfg = setup_cfg(config_file, opts, eval_only=not train)
    if device is None and cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        # the shipped configs say cuda: run on the CPU of a machine without GPU unless --device insists
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


def build_benchmark_model(cfg, train=False, build_in_dtype=False):
    """Build `cfg`'s model with random weights on `MODEL.DEVICE`, in train or eval mode.

    With `build_in_dtype` (eval, `MODEL.FOCUS.INFERENCE_DTYPE` != fp32) the parameters are created directly in the
    inference dtype (default-dtype context), so no fp32 copy of the weights ever exists; the normalisation buffers
    `pixel_mean` / `pixel_std` are then restored in fp32 (the input is normalised in fp32, as in the fp32 model),
    and with `MODEL.FOCUS.INFERENCE_CAST: autocast` every parameter autocast does not round goes back to fp32.
    """
    from detectron2.modeling import build_model

    dtype = DTYPES[cfg.MODEL.FOCUS.INFERENCE_DTYPE]
    if build_in_dtype and not train and dtype != torch.float32:
        with _default_dtype(dtype):
            model = build_model(cfg)
        model.pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, device=model.pixel_mean.device).view(-1, 1, 1)
        model.pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, device=model.pixel_std.device).view(-1, 1, 1)
        model._cast_for_inference()  # "autocast": what autocast does not round goes back to fp32
    else:
        model = build_model(cfg)
    model.train(train)
    if not train:
        model.criterion = None  # losses are training-only: free them
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def build_calibration(device="cpu"):
    """The calibration workload: `(model, input)`; time `model.forward_features(input)` under no_grad."""
    import timm

    model = timm.create_model(CALIBRATION_MODEL, pretrained=False, img_size=518).eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(0)).to(device)
    return model, x


def synthetic_image(size, seed=0):
    """A deterministic (3, size, size) uint8 RGB tensor: a real ECSSD image resized if `../shared/data` exists
    (so the Canny overlay sees natural edges), else smooth random blobs."""
    import cv2

    folder = _shared("FOCUS_SHARED_DATA", "data") / "sod" / "ECSSD-half" / "images"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if files:
        img = cv2.imread(str(files[seed % len(files)]), cv2.IMREAD_COLOR)[:, :, ::-1]
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    else:
        rng = np.random.default_rng(seed)
        small = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def synthetic_train_batch(size, seed=0):
    """One training sample as `FocusDatasetMapper` yields it: image, foreground/background `instances`."""
    from detectron2.structures import Boxes, Instances

    image = synthetic_image(size, seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    fg = ((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2) < (size * 0.25) ** 2
    masks = torch.stack([fg, ~fg])
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    inst = Instances((size, size))
    inst.gt_classes = torch.tensor([0, 1], dtype=torch.int64)
    inst.gt_masks = masks
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    return [{"image": image, "height": size, "width": size, "instances": inst}]


def make_inference_step(model, size, device):
    """Closure running one eval forward on a size x size image (batch 1, no_grad)."""
    batch = [{"image": synthetic_image(size).to(device), "height": size, "width": size}]

    def step():
        with torch.no_grad():
            out = model(batch)
        _sync(device)
        return out

    return step


def make_train_step(model, size, device, amp_dtype=None):
    """Closure running one training step (batch 1, synthetic GT): forward, summed losses, backward.

    `amp_dtype` (e.g. bf16) runs the forward under autocast, as `SOLVER.AMP.ENABLED` does. Gradients are freed
    after each step (no optimizer: its state is the same for every implementation).
    """
    from .trainer import store_frozen_in

    if amp_dtype is not None:
        store_frozen_in(model, amp_dtype)  # as FOCUSTrainer with SOLVER.AMP.ENABLED
    batch = synthetic_train_batch(size)
    params = [p for p in model.parameters() if p.requires_grad]
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
    cfg = _setup_cfg(args.config_file, args.opts, args.device, "fp32" if args.train else args.dtype, args.train,
                     args.cast)
    base_rss = _rss_mb()
    torch.manual_seed(0)
    model = build_benchmark_model(cfg, train=args.train, build_in_dtype=True)
    built_rss = _rss_mb()
    device = cfg.MODEL.DEVICE
    if args.train:
        amp = None if args.dtype == "fp32" else DTYPES[args.dtype]
        make_train_step(model, args.size, device, amp)()
    else:
        make_inference_step(model, args.size, device)()
    out = {"peak_rss_mb": _rss_mb(), "rss_after_import_mb": base_rss, "rss_after_build_mb": built_rss}
    if torch.device(device).type == "cuda":
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
    cmd = [sys.executable, "-m", "focus.engine.benchmark", "--rss-child", "--config-file", args.config_file,
           "--size", str(args.size), "--dtype", args.dtype, "--cast", args.cast, "--threads", str(args.threads)]
    if args.train:
        cmd.append("--train")
    if args.device:
        cmd += ["--device", args.device]
    if args.cpu_kernel:
        cmd.append("--cpu-kernel")
    cmd += ["--malloc", args.malloc] + list(args.opts)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    for line in proc.stdout.splitlines():
        if line.startswith("RSS_RESULT "):
            return json.loads(line[len("RSS_RESULT "):])
    raise RuntimeError(f"peak-RSS process failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")


def mask_agreement(ref, out):
    """Compare two lists of eval outputs: `(pixel fraction where instances.pred_masks agree, max |sem_seg diff|)`."""
    same, total, diff = 0, 0, 0.0
    for a, b in zip(ref, out):
        ma, mb = a["instances"].pred_masks, b["instances"].pred_masks
        same += int((ma == mb).sum())
        total += ma.numel()
        diff = max(diff, float((a["sem_seg"].float() - b["sem_seg"].float()).abs().max()))
    return same / max(total, 1), diff


def _set_inference_dtype(model, dtype):
    model.inference_dtype = DTYPES[dtype]
    model._cast_for_inference()


def _run_all(model, inputs):
    outs = []
    with torch.no_grad():
        for inp in inputs:
            o = model([inp])[0]
            outs.append({"sem_seg": o["sem_seg"].cpu(), "instances": o["instances"].to("cpu")})
    return outs


def golden_agreement(dtype, device="cpu", real_images=0, cast="autocast"):
    """fp32 vs `dtype` on the golden case (official golden weights and inputs, `configs/tiny/focus_golden.yaml`).

    Returns `{"mask_agreement", "sem_seg_max_abs_diff", "fp32_vs_official_mask_agreement",
    "fp32_vs_official_sem_seg_max_abs_diff", "pixels"}` or None when the reference folder is absent. With
    `real_images` > 0 the same weights also segment that many real ECSSD images (`"real_images"`: their
    agreement, max `sem_seg` difference, count). The golden weights are not trained (official initialisation plus
    noise), so borderline pixels flip under rounding as they do for a randomly initialised model.
    """
    import cv2

    ref_dir = _shared("FOCUS_SHARED_REFERENCE", "reference") / "golden_dev"
    if not ref_dir.is_dir():
        return None
    cfg = _setup_cfg(str(ROOT / "configs" / "tiny" / "focus_golden.yaml"), [], device, "fp32", cast=cast)
    model = build_benchmark_model(cfg)
    sd = torch.load(ref_dir / "weights_fp16.pth", map_location="cpu")["model"]
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=False)
    model.to(device)
    golden = torch.load(ref_dir / "outputs.pth", map_location="cpu", weights_only=False)
    inputs, official = [], []
    for case in golden.values():
        if not isinstance(case, dict) or "input" not in case:
            continue
        img = cv2.imread(str(ref_dir / case["input"]["file"]), cv2.IMREAD_COLOR)[:, :, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
        inputs.append({"image": image, "height": case["input"]["height"], "width": case["input"]["width"]})
        official.append(
            {"sem_seg": case["final"]["sem_seg"], "instances": _Masks(case["final"]["instances_pred_masks"])}
        )
    ref = _run_all(model, inputs)
    real = real_image_inputs(cfg, real_images) if dtype != "fp32" else []
    ref_real = _run_all(model, real)
    off_agree, off_diff = mask_agreement(official, ref)
    result = {"fp32_vs_official_mask_agreement": off_agree, "fp32_vs_official_sem_seg_max_abs_diff": off_diff}
    if dtype != "fp32":
        _set_inference_dtype(model, dtype)
        agree, diff = mask_agreement(ref, _run_all(model, inputs))
        result.update({"mask_agreement": agree, "sem_seg_max_abs_diff": diff})
        if real:
            agree, diff = mask_agreement(ref_real, _run_all(model, real))
            fg = float(np.mean([float(r["instances"].pred_masks.float().mean()) for r in ref_real]))
            result["real_images"] = {"mask_agreement": agree, "sem_seg_max_abs_diff": diff, "images": len(real),
                                     "fp32_mean_foreground_fraction": fg}
    result["pixels"] = sum(r["instances"].pred_masks.numel() for r in ref)
    return result


class _Masks:
    def __init__(self, m):
        self.pred_masks = m


def real_image_inputs(cfg, n):
    """The first `n` images of `../shared/data/sod/ECSSD-half`, resized as the evaluation does."""
    from detectron2.data import detection_utils as utils

    from ..data import FocusTestMapper

    folder = _shared("FOCUS_SHARED_DATA", "data") / "sod" / "ECSSD-half" / "images"
    if not folder.is_dir() or n <= 0:
        return []
    mapper = FocusTestMapper(cfg)
    inputs = []
    for f in sorted(folder.glob("*.jpg"))[:n]:
        img = utils.read_image(str(f), format="RGB")
        h, w = img.shape[:2]
        resized = mapper.resize.get_transform(img).apply_image(img)
        inputs.append({"image": torch.from_numpy(np.array(resized)).permute(2, 0, 1), "height": h,
                       "width": w, "file_name": f.name})
    return inputs


def real_image_agreement(model, cfg, n, dtype):
    """fp32 vs `dtype` of `model` (switched to `dtype` on return) on `n` real images; None without data."""
    inputs = real_image_inputs(cfg, n)
    if not inputs:
        return None
    ref = _run_all(model, inputs)
    _set_inference_dtype(model, dtype)
    agree, diff = mask_agreement(ref, _run_all(model, inputs))
    fg = float(np.mean([float(r["instances"].pred_masks.float().mean()) for r in ref]))
    return {"mask_agreement": agree, "sem_seg_max_abs_diff": diff, "images": len(inputs),
            "fp32_mean_foreground_fraction": fg}


def _load_cpu_kernel():
    from focus.layers.ms_deform_attn import load_cpu_extension

    return load_cpu_extension()


def op_comparison(args):
    """The deformable-attention CPU kernel vs the PyTorch reference on the FOCUS-L shapes at 512x512
    (`focus.layers.ms_deform_attn.benchmark`, also behind `tools/benchmark_op.py`), forward only, in the
    benchmark dtype: `{case: {"ref_fwd", "ext_fwd", "speedup", "max_abs_diff"}}`; None off CPU."""
    if torch.device(args.device or "cpu").type != "cpu":
        return None
    from focus.layers.ms_deform_attn.benchmark import FOCUS_L_512_CASES, benchmark_cases

    ext = _load_cpu_kernel()
    dtype = torch.float32 if args.dtype == "fp32" else DTYPES[args.dtype]
    res = benchmark_cases(ext, FOCUS_L_512_CASES, threads=args.threads, repeats=3, dtype=dtype)
    return {
        k: {"ref_fwd_s": r["ref_fwd"], "ext_fwd_s": r["ext_fwd"], "fwd_speedup": r["ref_fwd"] / r["ext_fwd"],
            "ref_fwdbwd_s": r["ref_fwdbwd"], "ext_fwdbwd_s": r["ext_fwdbwd"], "max_abs_diff": r["max_abs_diff"]}
        for k, r in res.items()
    }


def run_benchmark(args):
    """Run the whole benchmark described by the parsed `args`; returns the result dict (also printed)."""
    torch.set_num_threads(args.threads)
    import focus  # noqa: F401

    if args.cpu_kernel:
        _load_cpu_kernel()
    from focus.layers.ms_deform_attn import ms_deform_attn_backend

    cfg = _setup_cfg(args.config_file, args.opts, args.device, "fp32", args.train, args.cast)
    device = cfg.MODEL.DEVICE
    result = {
        "config_file": args.config_file, "opts": list(args.opts), "size": args.size, "dtype": args.dtype,
        "cast": args.cast, "threads": args.threads, "train": bool(args.train), "device": device, "runs": args.runs,
        "malloc": args.malloc,
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ms_deform_attn_backend": (
            "pytorch" if ms_deform_attn_backend(device) is None else ms_deform_attn_backend(device).__name__
        ),
    }
    torch.manual_seed(0)
    model = build_benchmark_model(cfg, train=args.train)
    if args.train:
        amp = None if args.dtype == "fp32" else DTYPES[args.dtype]
        ours = make_train_step(model, args.size, device, amp)
    else:
        if args.dtype != "fp32" and args.agreement:
            golden = golden_agreement(args.dtype, device, real_images=args.real_images, cast=args.cast)
            real = real_image_agreement(model, cfg, args.real_images, args.dtype)
            parts = []
            if golden is not None:
                golden_real = golden.pop("real_images", None)
                result["golden"] = golden
                parts.append(golden)
                if golden_real is not None:
                    result["golden_weights_real_images"] = golden_real
                    parts.append(golden_real)
            if real is not None:
                result["real_images"] = real
                parts.append(real)
            if parts:
                result["agreement_caveat"] = RANDOM_WEIGHTS_CAVEAT
                result["mask_agreement"] = min(p["mask_agreement"] for p in parts)
                result["sem_seg_max_abs_diff"] = max(p["sem_seg_max_abs_diff"] for p in parts)
        _set_inference_dtype(model, args.dtype)
        ours = make_inference_step(model, args.size, device)
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
        f"{'train step' if r['train'] else 'inference'} {r['size']}x{r['size']} {r['dtype']}"
        f"{'' if r['train'] or r['dtype'] == 'fp32' else ' (' + r['cast'] + ')'} on {r['device']}, "
        f"{r['threads']} threads, ms_deform_attn backend: {r['ms_deform_attn_backend']}, malloc {r['malloc']}",
        f"latency_s            {r['latency_s']:.3f} (calibration {r['calibration_s']:.3f} s, {r['runs']} pairs)",
        f"ratio_to_calibration {r['ratio_to_calibration']:.3f}",
    ]
    if "peak_rss_mb" in r:
        lines.append(f"peak_rss_mb          {r['peak_rss_mb']:.0f} (after build {r['rss_after_build_mb']:.0f})")
    if "mask_agreement" in r:
        lines.append(f"mask_agreement       {r['mask_agreement']:.5f}  "
                     f"sem_seg_max_abs_diff {r['sem_seg_max_abs_diff']:.4g}")
        for key in ("golden", "golden_weights_real_images", "real_images"):
            if key in r:
                d = r[key]
                lines.append(f"  {key}: agreement {d['mask_agreement']:.5f}, sem_seg max diff "
                             f"{d['sem_seg_max_abs_diff']:.4g}" + (f" ({d['images']} images)" if "images" in d else ""))
        lines.append(f"  caveat: {RANDOM_WEIGHTS_CAVEAT}")
    for case, d in r.get("ms_deform_attn_op", {}).items():
        lines.append(f"ms_deform_attn {case:<18} kernel {d['ext_fwd_s'] * 1e3:7.1f} ms vs reference "
                     f"{d['ref_fwd_s'] * 1e3:7.1f} ms (x{d['fwd_speedup']:.1f}), fwd+bwd x"
                     f"{d['ref_fwdbwd_s'] / d['ext_fwdbwd_s']:.1f}, max|diff| {d['max_abs_diff']:.2e}")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--size", type=int, default=512, help="square input size (pixels)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="inference: MODEL.FOCUS.INFERENCE_DTYPE; --train: autocast dtype")
    p.add_argument("--cast", choices=["autocast", "full"], default="autocast",
                   help="inference: MODEL.FOCUS.INFERENCE_CAST (how a reduced --dtype applies)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="timed (ours, calibration) pairs")
    p.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    p.add_argument("--train", action="store_true", help="time a training step (batch 1, synthetic GT)")
    p.add_argument("--device", default=None, help="overrides MODEL.DEVICE")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--real-images", type=int, default=20, help="ECSSD images for the reduced-precision agreement")
    p.add_argument("--no-agreement", dest="agreement", action="store_false")
    p.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-RSS process")
    p.add_argument("--no-op", dest="op", action="store_false", help="skip the deformable-attention op comparison")
    p.add_argument("--cpu-kernel", action="store_true", help="load (compile) the deformable-attention CPU kernel")
    p.add_argument("--malloc", choices=MALLOC_POLICIES, default=None,
                   help="glibc malloc policy of both processes (focus.engine.runtime); default: keep for inference, "
                        "release with --train, as the tools")
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
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
