#!/usr/bin/env python
"""Train or evaluate any member.

    python tools/train_net.py --config-file configs/cod/focus_dinov2_large.yaml --num-gpus 2
    python tools/train_net.py --config-file configs/cod/focus_dinov2_large.yaml --resume
    python tools/train_net.py --config-file configs/cod/focus_dinov2_large.yaml --eval-only MODEL.WEIGHTS W.pth

Trailing `KEY VALUE` pairs override the config. `--eval-only` builds the model for inference
(`focus.config.inference_config`) and prepares it (`TEST.INFERENCE_*`).
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.engine import default_argument_parser, default_setup, launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

import focus  # noqa: E402,F401  (registers the components)
from focus.engine.cli import run_main  # noqa: E402
from focus.engine.trainer import Trainer, check_device, setup_cfg  # noqa: E402
from focus.modeling.inference import inference_options, prepare_for_inference  # noqa: E402
from malloc_policy import MALLOC_POLICIES, configure_malloc, default_malloc_policy  # noqa: E402  (tools/)


def main(args):
    # --eval-only: reuse freed activation memory across images instead of page-faulting it in; training: return
    # large freed blocks to the system, for a lower peak (tools/malloc_policy.py)
    configure_malloc(getattr(args, "malloc", None) or default_malloc_policy(training=not args.eval_only))
    cfg = check_device(setup_cfg(args.config_file, args.opts, eval_only=args.eval_only))
    default_setup(cfg, args)
    # the package's own messages (time budget, best checkpoint, inference progress) in the console and log.txt too
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="focus", abbrev_name="focus")
    logging.getLogger("focus").propagate = True  # as before: an embedding application (or pytest) still sees them
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Trainer.load_weights(cfg, model)
        model = prepare_for_inference(model, **inference_options(cfg))
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        from detectron2.engine import hooks

        trainer.register_hooks([hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))])
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    parser.add_argument("--malloc", choices=MALLOC_POLICIES, default=None,
                        help="glibc malloc policy (default: keep with --eval-only, else release)")
    return parser


def cli(argv=None):
    """Parse `argv` and run `main` on `--num-gpus` processes (detectron2's `launch`)."""
    args = get_parser().parse_args(argv)
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    sys.exit(run_main(cli))
