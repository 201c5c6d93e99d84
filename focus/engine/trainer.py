"""Training and evaluation engine for every member: a detectron2 `DefaultTrainer` driven by the config.

What it adds to `DefaultTrainer` (the official FOCUS recipe by default, docs/focus.md#recipe; members choose theirs
by config):
* the member's mappers by name (`INPUT.DATASET_MAPPER_NAME`, `INPUT.TEST_MAPPER_NAME`);
* AdamW with one parameter group per tensor: lr x `SOLVER.BACKBONE_MULTIPLIER` under `backbone`, no weight
  decay for normalisation and `nn.Embedding` parameters, frozen parameters (CLIP) excluded;
* full-model gradient clipping (`SOLVER.CLIP_GRADIENTS.CLIP_TYPE: full_model`);
* `WarmupPolyLR` from detectron2's DeepLab project;
* mixed precision on any device: fp16 + GradScaler on CUDA, bf16 autocast on CPU (`SOLVER.AMP.DTYPE`), where
  detectron2's `AMPTrainer` requires CUDA;
* checkpoints written atomically (temporary file + `os.replace`), so a kill during a save never corrupts the
  checkpoint that `last_checkpoint` names;
* a training-time budget (`SOLVER.MAX_TIME`) that ends training like its last iteration, the best weights of the
  periodic evaluations kept (`TEST.BEST_METRIC`), an ETA capped by the budget (`focus.engine.hooks`);
* the task evaluator of `focus.evaluation` and an inference loop that skips images an interrupted evaluation
  already scored; test-time augmentation that returns what that evaluator needs.
"""
import hashlib
import itertools
import logging
import os
import time
import weakref
from collections import OrderedDict

import torch
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, SimpleTrainer, create_ddp_model
from detectron2.evaluation import DatasetEvaluators, print_csv_format
from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds, setup_logger

from ..config import inference_config
from ..data import ensure_registered
from ..data.faults import FAULTS, ExcludeBadSamples, SkipBadSamples
from ..data.mappers import build_mapper
from ..errors import MissingFileError, UnknownNameError, UserError
from ..modeling.checkpoint import FOCUSCheckpointer
from ..utils.file_io import atomic_write
from .cli import debug_enabled
from .hooks import BestCheckpointer, BudgetMetricPrinter, TimeBudget, TimeBudgetReached
from .lr_scheduler import LR_SCHEDULERS
from .lr_scheduler import build_lr_scheduler as build_focus_lr_scheduler
from .tta import TTAModel

__all__ = [
    "Trainer",
    "FOCUSTrainer",
    "AtomicCheckpointer",
    "AutocastTrainer",
    "build_optimizer",
    "inference_on_dataset",
    "amp_dtype",
    "setup_cfg",
    "check_device",
    "store_frozen_in",
    "weights_loaded",
    "build_ddp_model",
    "best_metric_key",
]

logger = logging.getLogger(__name__)


class AtomicCheckpointer(FOCUSCheckpointer):
    """`FOCUSCheckpointer` whose checkpoint files and `last_checkpoint` tag are written atomically.

    detectron2 streams `torch.save` straight into the final file and then rewrites `last_checkpoint` in place,
    so a kill at the wrong moment leaves a truncated file that `--resume` then fails to load.
    """

    def save(self, name, *, tag_last=True, model_only=False, **kwargs):
        """Write `<save_dir>/<name>.pth`: the model, the checkpointables (trainer, optimizer, scheduler) unless
        `model_only`, and `kwargs`; then name it in `last_checkpoint` (what `--resume` loads) if `tag_last`."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        if not model_only:
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")


def amp_dtype(cfg, device_type):
    """Autocast dtype for `SOLVER.AMP.DTYPE` ("auto": fp16 on CUDA, bf16 elsewhere)."""
    name = cfg.SOLVER.AMP.DTYPE.lower()
    if name == "auto":
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"SOLVER.AMP.DTYPE must be one of auto, fp16, bf16; got {cfg.SOLVER.AMP.DTYPE!r}")
    return table[name]


def store_frozen_in(model, dtype):
    """Let every submodule with a `store_frozen_in(dtype)` method (the CLIP refiner) keep its frozen weights in the
    autocast `dtype`: bit-identical results under autocast, less memory per step. Returns `model`."""
    for m in model.modules():
        if hasattr(m, "store_frozen_in"):
            m.store_frozen_in(dtype)
    return model


def build_ddp_model(model):
    """`model` wrapped in `DistributedDataParallel` when the world size exceeds 1 (detectron2's `create_ddp_model`,
    gloo on CPU included), else `model`.

    Buffers are not broadcast (BatchNorm layers either synchronise their statistics or keep them per process, as in
    the official recipe). CPU models get no `device_ids`. A model whose forward leaves some parameters unused
    declares it with a truthy `find_unused_parameters` attribute (e.g. FOCUS without its CLIP branch, whose
    projection heads are built but idle); DDP then looks for them at every step instead of failing at the second.
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    unused = bool(getattr(model, "find_unused_parameters", False))
    kwargs = {"broadcast_buffers": False, "find_unused_parameters": unused}
    if device.type == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def weights_loaded(model):
    """Call `model.on_weights_loaded()` (unwrapping DDP) if the model defines it: the hook by which a model refreshes
    what it derives from its weights after a load. Returns `model`."""
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    hook = getattr(inner, "on_weights_loaded", None)
    if callable(hook):
        hook()
    return model


class AutocastTrainer(SimpleTrainer):
    """`SimpleTrainer` under `torch.autocast` on any device; a GradScaler only for fp16 on CUDA."""

    def __init__(self, model, data_loader, optimizer, device_type="cpu", dtype=torch.bfloat16):
        super().__init__(model, data_loader, optimizer)
        self.device_type = device_type
        self.dtype = dtype
        use_scaler = device_type == "cuda" and dtype == torch.float16
        self.grad_scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def run_step(self):
        assert self.model.training, "[AutocastTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        # no weight-cast cache: it would hold a low-precision copy of every weight until the forward ends, while
        # most weights are used once per forward (the frozen CLIP tower is stored in the AMP dtype);
        # docs/speed_memory.md#training
        with torch.autocast(device_type=self.device_type, dtype=self.dtype, cache_enabled=False):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
        else:
            losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])


_NORM_TYPES = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def build_optimizer(cfg, model):
    """The official optimizer (docs/focus.md#recipe): one group per parameter, backbone lr multiplier, no weight decay
    on normalisation and embedding parameters, full-model gradient clipping inside `step`."""
    from detectron2.layers import FrozenBatchNorm2d

    norm_types = _NORM_TYPES + (FrozenBatchNorm2d,)
    defaults = {"lr": cfg.SOLVER.BASE_LR, "weight_decay": cfg.SOLVER.WEIGHT_DECAY}
    params, memo = [], set()
    for module_name, module in model.named_modules():
        for _, value in module.named_parameters(recurse=False):
            if not value.requires_grad or value in memo:
                continue
            memo.add(value)
            group = dict(defaults)
            if "backbone" in module_name:
                group["lr"] = group["lr"] * cfg.SOLVER.BACKBONE_MULTIPLIER
            if isinstance(module, norm_types):
                group["weight_decay"] = cfg.SOLVER.WEIGHT_DECAY_NORM
            if isinstance(module, torch.nn.Embedding):
                group["weight_decay"] = cfg.SOLVER.WEIGHT_DECAY_EMBED
            params.append({"params": [value], **group})

    clip = cfg.SOLVER.CLIP_GRADIENTS
    full_model = clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE > 0.0

    def with_full_model_clipping(optim_cls):
        if not full_model:
            return optim_cls

        class FullModelGradientClippingOptimizer(optim_cls):
            def step(self, closure=None):
                all_params = itertools.chain(*[g["params"] for g in self.param_groups])
                torch.nn.utils.clip_grad_norm_(all_params, clip.CLIP_VALUE, norm_type=clip.NORM_TYPE)
                return super().step(closure=closure)

        return FullModelGradientClippingOptimizer

    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "ADAMW":
        optimizer = with_full_model_clipping(torch.optim.AdamW)(params, cfg.SOLVER.BASE_LR)
    elif name == "SGD":
        optimizer = with_full_model_clipping(torch.optim.SGD)(params, cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
    if clip.ENABLED and clip.AFTER_STEP:
        # clipping after the update (a recipe's defect reproduced on request): the clipped gradients are never used
        optimizer = _clip_after_step(optimizer, clip)
    elif not full_model:
        optimizer = maybe_add_gradient_clipping(cfg, optimizer)
    return optimizer


def _clip_after_step(optimizer, clip):
    """Make `optimizer.step()` clip the gradients (SOLVER.CLIP_GRADIENTS: value or norm) after updating."""
    cls = type(optimizer)

    def step(self, closure=None):
        out = cls.step(self, closure)
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if clip.CLIP_TYPE == "value":
            torch.nn.utils.clip_grad_value_(params, clip.CLIP_VALUE)
        else:
            torch.nn.utils.clip_grad_norm_(params, clip.CLIP_VALUE, norm_type=clip.NORM_TYPE)
        return out

    optimizer.__class__ = type(cls.__name__ + "WithClipAfterStep", (cls,), {"step": step})
    return optimizer


def model_fingerprint(model):
    """A short hex digest of `model`'s parameters and buffers (names, shapes, dtypes and a strided sample of at
    most 4096 values of each), cheap enough for every evaluation: tells one set of weights from another."""
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
            digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if t.numel() and not t.is_sparse and t.layout == torch.strided:
                flat = t.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)].float().cpu().contiguous()
                digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def inference_on_dataset(model, data_loader, evaluator):
    """Run `model` on `data_loader` and evaluate, skipping inputs the evaluator already scored.

    Like `detectron2.evaluation.inference_on_dataset`, but asks `evaluator.is_done(input)` (when the evaluator
    has it) first, so an interrupted evaluation resumes without recomputing finished images; evaluators with a
    `model_key` get `model_fingerprint(model)`, so only scores of these weights are resumed.
    """
    evaluators = evaluator._evaluators if isinstance(evaluator, DatasetEvaluators) else [evaluator]
    key = model_fingerprint(model) if any(hasattr(e, "model_key") for e in evaluators) else None
    for e in evaluators:
        if hasattr(e, "model_key"):
            e.model_key = key
    checks = [e.is_done for e in evaluators if hasattr(e, "is_done")]
    evaluator.reset()
    total = len(data_loader)
    done = skipped = excluded = 0
    start = time.perf_counter()
    with torch.inference_mode():
        was_training = model.training
        model.eval()
        for idx, inputs in enumerate(data_loader):
            bad = [x for x in inputs if "bad_file" in x]  # unreadable image (focus.data.faults.ExcludeBadSamples)
            for x in bad:
                for e in evaluators:
                    if hasattr(e, "exclude"):
                        e.exclude(x["bad_file"], x["reason"])
            excluded += len(bad)
            inputs = [x for x in inputs if "bad_file" not in x]
            todo = [x for x in inputs if not (checks and all(check(x) for check in checks))]
            skipped += len(inputs) - len(todo)
            if todo:
                outputs = model(todo)
                evaluator.process(todo, outputs)
                done += len(todo)
            log_every_n_seconds(
                logging.INFO,
                f"Inference done {idx + 1}/{total} ({skipped} already scored). "
                f"{(time.perf_counter() - start) / max(done, 1):.3f} s/img",
                n=5,
            )
        model.train(was_training)
    logger.info(f"Inference: {done} images run, {skipped} reused from an interrupted evaluation"
                + (f", {excluded} excluded (unreadable; listed above)" if excluded else ""))
    results = evaluator.evaluate()
    return results if results is not None else {}


def check_test_datasets(cfg):
    """Raise a `UserError` now if a `DATASETS.TEST` name is unknown or its folders are missing (the evaluation
    after training would otherwise fail only at the end of the run)."""
    from detectron2.data import MetadataCatalog

    for name in cfg.DATASETS.TEST:
        ensure_registered(name)
        meta = MetadataCatalog.get(name)
        for key in ("image_root", "mask_root"):
            root = getattr(meta, key, None)
            if root and not os.path.isdir(root):
                prepare = getattr(meta, "prepare", "see datasets/README.md")
                raise MissingFileError(f"DATASETS.TEST '{name}': folder {root} does not exist. Prepare it with: "
                                       f"{prepare}, or set DATASETS.TEST", root)


def best_metric_key(cfg):
    """The event-storage key `TEST.BEST_METRIC` names: "<first DATASETS.TEST entry>/<metric>" (None when off).

    Raises a `UserError` now (not after the first evaluation) if there is no test dataset or the evaluator does not
    report that metric for it under `TEST.EVAL_PROTOCOL`, or if `TEST.BEST_MODE` is not "max" or "min"."""
    from detectron2.data import MetadataCatalog

    metric = cfg.TEST.BEST_METRIC
    if not metric:
        return None
    if cfg.TEST.BEST_MODE not in ("max", "min"):
        raise UserError(f"TEST.BEST_MODE must be 'max' or 'min', got {cfg.TEST.BEST_MODE!r}")
    if not cfg.DATASETS.TEST:
        raise UserError("TEST.BEST_METRIC needs an evaluation dataset: set DATASETS.TEST (the first one is used)")
    from ..evaluation.evaluator import reported_metric_names

    dataset = ensure_registered(cfg.DATASETS.TEST[0])
    names = reported_metric_names(cfg.TEST.EVAL_PROTOCOL, getattr(MetadataCatalog.get(dataset), "task", None))
    if metric not in names:
        raise UserError(f"TEST.BEST_METRIC {metric!r} is not reported for {dataset} under TEST.EVAL_PROTOCOL "
                        f"{cfg.TEST.EVAL_PROTOCOL!r}; choose one of {', '.join(names)}")
    return f"{dataset}/{metric}"


def _no_user_error_traceback(record):
    """Log filter: detectron2's training loop logs every exception with its traceback; a `UserError` is printed
    as one line by the tool instead (`focus.engine.cli`), unless `--debug` / `FOCUS_DEBUG=1`; the end of a time
    budget (`TimeBudgetReached`) is no error."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, TimeBudgetReached):
        return False
    return not (isinstance(exc, UserError) and not debug_enabled())


class Trainer(DefaultTrainer):
    """`DefaultTrainer` for any member: mappers by name (`INPUT.DATASET_MAPPER_NAME`, `INPUT.TEST_MAPPER_NAME`),
    the `focus` evaluator, the optimizer and schedule of the config, AMP on any device, atomic checkpoints."""

    def __init__(self, cfg):
        from detectron2.engine import TrainerBase

        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = build_ddp_model(model)
        if cfg.SOLVER.AMP.ENABLED:
            device_type = torch.device(cfg.MODEL.DEVICE).type
            store_frozen_in(model, amp_dtype(cfg, device_type))
            self._trainer = AutocastTrainer(model, data_loader, optimizer, device_type, amp_dtype(cfg, device_type))
        else:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's hooks, plus `TimeBudget` right after the `IterationTimer` (it times the steps alone) and, on
        the main process with `TEST.BEST_METRIC`, a `BestCheckpointer` right after the `EvalHook`."""
        from detectron2.engine import hooks

        self._time_budget = TimeBudget(self.cfg.SOLVER.MAX_TIME)
        ret = super().build_hooks()
        timer = next((i for i, h in enumerate(ret) if isinstance(h, hooks.IterationTimer)), -1)
        ret.insert(timer + 1, self._time_budget)
        key = best_metric_key(self.cfg)
        if key is not None and comm.is_main_process():
            if self.cfg.TEST.EVAL_PERIOD <= 0:
                logger.warning("TEST.BEST_METRIC without TEST.EVAL_PERIOD: only the final evaluation runs, so "
                               "model_best.pth holds the final weights")
            evaluation = max(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(evaluation + 1, BestCheckpointer(self.checkpointer, key, self.cfg.TEST.BEST_MODE))
        return ret

    def build_writers(self):
        """detectron2's writers, with the metric line's ETA capped by `SOLVER.MAX_TIME` (`BudgetMetricPrinter`)."""
        from detectron2.utils.events import CommonMetricPrinter

        writers = [BudgetMetricPrinter(self.max_iter, getattr(self, "_time_budget", None))
                   if type(w) is CommonMetricPrinter else w for w in super().build_writers()]
        if self.cfg.TEST.WANDBENABLE:
            from .wandb import WandbWriter  # optional dependency, only when asked for

            writers.append(WandbWriter(self.cfg))
        return writers

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader; samples with an unreadable image or a mask that does not fit are skipped
        and counted (`focus.data.faults.SkipBadSamples`, `DATALOADER.MAX_BAD_SAMPLE_FRACTION`)."""
        from detectron2.data import get_detection_dataset_dicts

        for name in cfg.DATASETS.TRAIN:
            ensure_registered(name)
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
        mapper = SkipBadSamples(build_mapper(cfg, is_train=True), len(dataset), cfg.DATALOADER.MAX_BAD_SAMPLE_FRACTION)
        return build_detection_train_loader(cfg, dataset=dataset, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's inference loader; an unreadable image is reported and excluded, not fatal."""
        ensure_registered(dataset_name)
        return build_detection_test_loader(cfg, dataset_name, mapper=ExcludeBadSamples(build_mapper(cfg, is_train=False)))

    def train(self):
        """Train; the samples skipped as bad (`focus.data.faults`) are reported at the end, even after a failure."""
        check_test_datasets(self.cfg)  # fail now, not after hours of training
        if comm.is_main_process() and self.cfg.OUTPUT_DIR:
            FAULTS.reset(os.path.join(self.cfg.OUTPUT_DIR, "bad_samples.tsv"))
        loop_logger = logging.getLogger("detectron2.engine.train_loop")
        loop_logger.addFilter(_no_user_error_traceback)
        try:
            return super().train()
        except TimeBudgetReached:  # the after_train hooks have run as after the last iteration
            if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
                from detectron2.evaluation import verify_results

                verify_results(self.cfg, self._last_eval_results)
                return self._last_eval_results
            return None
        finally:
            loop_logger.removeFilter(_no_user_error_traceback)
            faults = FAULTS.faults()
            if faults and comm.is_main_process():
                lines = "\n".join(f"  {p}: {r}" for p, r in sorted(faults.items()))
                logger.warning(f"{len(faults)} bad sample(s) skipped during training (listed in "
                               f"{FAULTS.path or 'the log'}):\n{lines}")

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        # imported here: the metrics' dependencies (pysodmetrics, scikit-image) are for evaluation only
        from ..evaluation import build_evaluator
        from ..evaluation.evaluator import safe_name

        # dataset names may hold paths (`folder:<task>:<images>:<masks>`): one folder level each
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", safe_name(dataset_name))
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        if cfg.SOLVER.LR_SCHEDULER_NAME in LR_SCHEDULERS:
            return build_focus_lr_scheduler(cfg, optimizer)
        return build_deeplab_lr_scheduler(cfg, optimizer)

    def resume_or_load(self, resume=True):
        """detectron2's, plus: a resumed run follows this config's `SOLVER.MAX_ITER` (the checkpointed schedule
        remembers the length it was built with, and a poly schedule past its end raises); then
        `weights_loaded(model)`: models refresh what they derive from their weights (e.g. cached features) now that
        the checkpoint is in."""
        super().resume_or_load(resume=resume)
        if hasattr(self.scheduler, "max_iters"):
            self.scheduler.max_iters = self.max_iter
        weights_loaded(self.model)

    @classmethod
    def load_weights(cls, cfg, model):
        """Load `MODEL.WEIGHTS` (an official or `focus` checkpoint, or a bare state dict) into `model`."""
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
        return weights_loaded(model)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every `DATASETS.TEST` entry; returns `{dataset: {metric: value}}`."""
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name)
            res = inference_on_dataset(model, loader, evaluator)
            results[name] = res.get(name, res) if isinstance(res, dict) else res
            if comm.is_main_process():
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(res)
        return results

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate with test-time augmentation (`TEST.AUG`); results are suffixed `_TTA`."""
        from ..evaluation.evaluator import safe_name

        model = TTAModel(cfg, model)
        evaluators = [
            cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", safe_name(name)))
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in res.items())


FOCUSTrainer = Trainer  # the earlier name


def check_device(cfg):
    """Raise a one-line `UserError` if `MODEL.DEVICE` names a device this machine does not have (detectron2's
    default is "cuda"; a CPU-only machine needs `MODEL.DEVICE cpu`)."""
    device = str(cfg.MODEL.DEVICE)
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UserError(f"MODEL.DEVICE {device!r} is not a device name; use cpu, cuda or cuda:<index>") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"MODEL.DEVICE is {device!r} but no CUDA GPU is available here; add MODEL.DEVICE cpu to "
                        f"the command line (demo: after --opts)")
    return cfg


def setup_cfg(config_file, opts=(), eval_only=False):
    """Build a frozen config: detectron2 defaults + `add_focus_config` + file + overrides.

    For `--eval-only` the config is `inference_config`'s (training-only parts are not built).
    """
    from ..config import get_focus_cfg

    from detectron2.modeling import META_ARCH_REGISTRY

    cfg = get_focus_cfg(config_file, opts)
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in META_ARCH_REGISTRY:
        known = ", ".join(sorted(n for n, _ in META_ARCH_REGISTRY))
        raise UnknownNameError(f"MODEL.META_ARCHITECTURE: no model named {name!r}; registered: {known}")
    cfg.freeze()
    return inference_config(cfg) if eval_only else cfg
