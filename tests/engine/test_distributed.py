"""Multi-process training on CPU: two processes over gloo, started by detectron2's `launch` (as
`tools/train_net.py --num-gpus 2` does), equal one process that sees the same two images.

Each process trains the tiny FOCUS on one image (DistributedDataParallel from `build_ddp_model`, the backbone's
synchronised batch norms), two optimiser steps; then both evaluate a four-image folder dataset through
`Trainer.test` (inference sampler split, evaluator gathering to rank 0). The reference is one process with
both images in its batch. Compared: every loss term (mean over the processes), every gradient (DDP average),
the second step's losses (after the update and the batch-norm statistics), the evaluation results; with the
CLIP branch off (DDP must then find the idle projection heads) and on (a small CLIP tower stands in for ViT-B/16).

The point draws of the matcher and the criterion are replaced by draws that depend on the row only (the same
points for every image), so that both runs sample the same points. The edge prior's batch norms are per-process
in the official recipe (plain BatchNorm, as are the CLIP projection heads' `bn1`, docs/focus.md#t6); they
run in eval mode here so that the two runs compute the same function.
"""
import os

import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TINY = os.path.join(ROOT, "configs", "tiny", "focus_tiny.yaml")
_RAND = torch.rand
_VANISHING = ("backbone.up.bias", "backbone.edge.fc1.bias", "image_embed.bn1.bias", "text_embed.bn1.bias")


def _row_rand(*size, **kwargs):
    """`torch.rand` whose rows repeat over the leading dimensions (a function of the last two sizes only)."""
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
    g = torch.Generator().manual_seed(1000 + shape[-2])
    return _RAND(shape[-2:], generator=g).expand(shape).clone()


def _inputs(size=64):
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(2):
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        fg = ((yy - 25 - 10 * i) ** 2 / 15**2 + (xx - 30) ** 2 / (10 + 5 * i) ** 2) < 1
        masks = torch.stack([fg, ~fg])
        inst = Instances((size, size))
        inst.gt_classes = torch.tensor([0, 1])
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = BitMasks(masks).get_bounding_boxes()
        out.append({"image": image, "instances": inst, "height": size, "width": size})
    return out


def _tiny_clip_builder(*args, **kwargs):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "modeling", "conftest.py")
    spec = importlib.util.spec_from_file_location("modeling_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._tiny_clip(embed_dim=512, layers=2)


def _cfg(data_root, out_dir, clip):
    from focus.engine.trainer import setup_cfg

    test = f"folder:sod:{data_root}/sod/test/images:{data_root}/sod/test/masks"
    return setup_cfg(TINY, [
        "MODEL.DINOV2.DROP_PATH_RATE", 0.0, "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256,
        "MODEL.CLIP_REFINER.ENABLED", clip,
        "MODEL.CLIP_REFINER.TEXT_TEMPLATES", "predefined", "INPUT.MIN_SIZE_TEST", 64,
        "DATASETS.TEST", f"('{test}',)", "OUTPUT_DIR", str(out_dir), "TEST.SAVE_PER_IMAGE", False,
    ])


def _freeze_per_process_norms(model):
    model.backbone.edge.eval()
    for head in ("image_embed", "text_embed"):
        getattr(model.sem_seg_head.predictor, head).bn1.eval()


def _run(images, data_root, out_dir, clip=False):
    """Build, two SGD steps on `images`, evaluation (CLIP off only); returns (losses of both steps, gradients of
    step 1, evaluation results, backbone norm1 running statistics)."""
    cfg = _cfg(data_root, out_dir, clip)
    default_dtype = torch.get_default_dtype()
    if clip:
        # loss_clip's logits are LayerNorm products / 0.07: in fp32, the rounding differences of batched vs
        # per-image matrix products reach 1e-3 of some projection-head gradients; float64 shows the equality
        torch.set_default_dtype(torch.float64)
    try:
        return _train_and_test(cfg, images, clip)
    finally:
        torch.set_default_dtype(default_dtype)


def _train_and_test(cfg, images, clip):
    from detectron2.modeling import build_model
    from detectron2.utils import comm

    from focus.engine.trainer import Trainer, build_ddp_model
    from focus.modeling.clip_refiner import refiner as refiner_mod

    patch = pytest.MonkeyPatch()
    patch.setattr(refiner_mod, "build_clip_model", _tiny_clip_builder)
    try:
        torch.manual_seed(0)
        model = build_model(cfg).train()
    finally:
        patch.undo()
    _freeze_per_process_norms(model)
    net = build_ddp_model(model)
    assert comm.get_world_size() == 1 or net.find_unused_parameters == (not clip)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses, grads = [], None
    patch.setattr(torch, "rand", _row_rand)
    try:
        for step in range(2):
            loss_dict = net(images)
            optimizer.zero_grad()
            sum(loss_dict.values()).backward()
            losses.append({k: v.detach() for k, v in loss_dict.items()})
            if step == 0:
                grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            optimizer.step()
    finally:
        patch.undo()
    if comm.get_world_size() > 1:
        losses = [{k: v / comm.get_world_size() for k, v in d.items()} for d in losses]
        for d in losses:
            for v in d.values():
                torch.distributed.all_reduce(v)
    results = {} if clip else Trainer.test(cfg, model)
    return losses, grads, results, {k: v.clone() for k, v in model.state_dict().items() if "norm1.running" in k}


def _worker(data_root, out_dir):
    from detectron2.utils import comm

    rank = comm.get_rank()
    out = {clip: _run([_inputs()[rank]], data_root, os.path.join(out_dir, "two"), clip) for clip in (False, True)}
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pth"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from detectron2.engine import launch

    from focus.data.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("ddp")
    generate_dataset(tmp / "data", "sod", 0, 4, size=(64, 80), seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        launch(_worker, 2, dist_url="auto", args=(str(tmp / "data"), str(tmp)))
        single = {clip: _run(_inputs(), str(tmp / "data"), str(tmp / "one"), clip) for clip in (False, True)}
    finally:
        torch.set_num_threads(threads)
    return single, [torch.load(tmp / f"rank{r}.pth", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("clip", [False, True], ids=["clip_off", "clip_on"])
def test_losses_and_gradients_equal_one_process(runs, clip):
    (losses, grads, _, stats), ranks = runs[0][clip], [r[clip] for r in runs[1]]
    for step in range(2):
        assert set(ranks[0][0][step]) == set(losses[step])
        for key, value in losses[step].items():
            for r in ranks:
                torch.testing.assert_close(r[0][step][key], value, rtol=2e-5, atol=1e-6, msg=f"step {step} {key}")
    assert set(ranks[0][1]) == set(grads)
    # relative to each tensor's max-abs; gradients that are zero in exact arithmetic (a bias whose per-channel
    # constant the next batch-statistics BatchNorm or LayerNorm removes) are rounding noise of both runs: they are
    # held to 1e-5 of the model's largest gradient instead
    largest = max(g.abs().max().item() for g in grads.values())
    for name, g in grads.items():
        tol = 1e-5 * largest if name.endswith(_VANISHING) else 1e-4 * g.abs().max().item() + 1e-6 * largest
        for r in ranks:
            err = (r[1][name] - g).abs().max().item()
            assert err <= tol, f"{name}: {err:.2e} (max {g.abs().max().item():.2e})"
    for key, value in stats.items():
        for r in ranks:
            torch.testing.assert_close(r[3][key], value, rtol=1e-5, atol=1e-6)


def test_evaluation_gathers_across_processes(runs):
    (_, _, results, _), ranks = runs[0][False], [r[False] for r in runs[1]]
    assert results and ranks[0][2].keys() == results.keys()
    for name, metrics in results.items():
        for key, value in metrics.items():
            assert ranks[0][2][name][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, key)
