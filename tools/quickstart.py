#!/usr/bin/env python
"""The quick start: the whole FOCUS pipeline, offline, on a CPU, in minutes.

1. generates the synthetic SOD dataset (`datasets/synthetic/sod/{train,test}`);
2. trains `configs/tiny/focus_tiny.yaml` on it (resumes if interrupted);
3. evaluates the model on the synthetic test split under both protocols (`standard`, `focus`);
4. evaluates a trivial baseline (a centred Gaussian prior) the same way;
5. runs the demo on synthetic test images and on sample photos shipped with scikit-image;
6. writes `output/quickstart/summary.json` and prints where everything is.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DETECTRON2_DATASETS", str(ROOT / "datasets"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.structures import Instances  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

import focus  # noqa: E402,F401
from focus.utils.file_io import atomic_write  # noqa: E402
from focus.data.synthetic import generate_dataset  # noqa: E402
from focus.engine.cli import run_main  # noqa: E402
from focus.engine.trainer import FOCUSTrainer, setup_cfg  # noqa: E402
from focus.evaluation import FocusEvaluator  # noqa: E402

BASELINE = "centred Gaussian prior"


def gaussian_prior(height, width, sigma=0.25):
    """A centred isotropic Gaussian, sigma = `sigma` x the image size: the classic centre-bias baseline."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))


def baseline_model(batched_inputs):
    outs = []
    for x in batched_inputs:
        fg = gaussian_prior(x["height"], x["width"])
        inst = Instances((x["height"], x["width"]))
        inst.pred_masks = (fg > 0.5).to(torch.int32)
        outs.append({"foreground": fg, "mask": (fg > 0.5).to(torch.uint8), "sem_seg": torch.stack([fg, 1 - fg]),
                     "instances": inst})
    return outs


def evaluate(run, loader, dataset, out_dir):
    """One inference pass, scored under both protocols. Returns {"standard": {...}, "focus": {...}}."""
    evaluators = {p: FocusEvaluator(dataset, output_dir=str(out_dir / p), protocol=p) for p in ("standard", "focus")}
    for e in evaluators.values():
        e.reset()
    with torch.inference_mode():
        for inputs in loader:
            outputs = run(inputs)
            for e in evaluators.values():
                e.process(inputs, outputs)
    return {p: dict(e.evaluate()[dataset]) for p, e in evaluators.items()}


def sample_photos(out_dir, synthetic_test_dir, n_synthetic=4):
    """A few synthetic test images and the scikit-image sample photos, copied into one demo input folder."""
    from PIL import Image
    from skimage import data as skdata

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = out_dir / f"skimage_{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skdata, name)()).save(path)
    for img in sorted(Path(synthetic_test_dir).iterdir())[:n_synthetic]:
        target = out_dir / f"synthetic_{img.name}"
        if not target.exists():
            target.write_bytes(img.read_bytes())
    return out_dir


def _demo_main():
    """`main(argv)` of tools/demo.py (a script, not a module of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("focus_tools_demo", ROOT / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(ROOT / "configs/tiny/focus_tiny.yaml"))
    parser.add_argument("--output", default=str(ROOT / "output/quickstart"))
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=60)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. SOLVER.MAX_ITER 50")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(str(out / "log.txt"))
    setup_logger(str(out / "log.txt"), name="focus")
    log = logging.getLogger("focus.quickstart")
    t0 = time.time()

    data_root = Path(os.environ["DETECTRON2_DATASETS"]) / "synthetic"
    generate_dataset(data_root, "sod", args.n_train, args.n_test, size=(args.size, args.size), seed=0)
    log.info(f"[1/5] synthetic SOD data in {data_root / 'sod'} ({args.n_train} train / {args.n_test} test)")

    cfg = setup_cfg(args.config_file, ["OUTPUT_DIR", str(out / "train"), *args.opts])
    # SEED (set in the tiny config) fixes the initial weights and the data order: docs/reproducibility.md
    seed = cfg.SEED if cfg.SEED >= 0 else int.from_bytes(os.urandom(2), "big")
    seed_all_rng(seed)
    print(f"Quick start seed: {seed}" + ("" if cfg.SEED >= 0 else " (drawn at random: SEED < 0 in the config)"),
          flush=True)
    dataset = cfg.DATASETS.TEST[0]
    # evaluation happens below, once, under both protocols and next to the baseline
    train_cfg = setup_cfg(args.config_file, ["OUTPUT_DIR", str(out / "train"), *args.opts, "DATASETS.TEST", "()"])
    t_train = time.time()
    trainer = FOCUSTrainer(train_cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    t_train = time.time() - t_train
    log.info(f"[2/5] trained {cfg.SOLVER.MAX_ITER} iterations in {t_train:.0f} s -> {out / 'train'}")

    loader = FOCUSTrainer.build_test_loader(cfg, dataset)
    model = trainer.model.eval()
    results = evaluate(model, loader, dataset, out / "eval" / "focus_tiny")
    baseline = evaluate(baseline_model, loader, dataset, out / "eval" / "baseline")
    log.info(f"[3/5] evaluated on {dataset} under both protocols")

    demo_in = sample_photos(out / "demo_inputs", data_root / "sod" / "test" / "images")
    demo_out = out / "demo"
    demo_status = _demo_main()(
        ["--config-file", args.config_file, "--input", str(demo_in), "--output", str(demo_out),
         "--opts", "MODEL.WEIGHTS", str(out / "train" / "model_final.pth"), *args.opts]
    )
    log.info(f"[4/5] demo outputs in {demo_out}")

    s_model, s_base = results["standard"]["Smeasure"], baseline["standard"]["Smeasure"]
    summary = {
        "standard": results["standard"],
        "focus": results["focus"],
        "baseline": {"name": BASELINE, "standard": baseline["standard"], "focus": baseline["focus"]},
        "smeasure_gain_over_baseline": s_model - s_base,
        "dataset": dataset,
        "train": {"config": args.config_file, "iterations": cfg.SOLVER.MAX_ITER, "seconds": round(t_train, 1),
                  "seed": seed},
        "paths": {"train": str(out / "train"), "eval": str(out / "eval"), "demo": str(demo_out)},
        "demo_exit_status": demo_status,
        "total_seconds": round(time.time() - t0, 1),
    }
    atomic_write(str(out / "summary.json"), lambda fh: fh.write(json.dumps(summary, indent=2)), mode="w")
    log.info(f"[5/5] summary in {out / 'summary.json'}")
    print(f"\nQuick start finished in {summary['total_seconds']:.0f} s (seed {seed})")
    print(f"  S-measure (standard): model {s_model:.4f} | {BASELINE} {s_base:.4f} | gain {s_model - s_base:+.4f}")
    for p in ("standard", "focus"):
        print(f"  {p:8s} " + "  ".join(f"{k}={v:.4f}" for k, v in results[p].items() if isinstance(v, float)))
    print(f"  checkpoints: {out / 'train'}\n  evaluation:  {out / 'eval'}\n  demo:        {demo_out}")
    print(f"  summary:     {out / 'summary.json'}")
    return 0 if demo_status == 0 else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
