"""RUN built from its configs: the released architecture against the manifest, input-size checks, the
eval contract and the loss dict of a tiny model."""
import json

import pytest
import torch



def _cfg(name, opts=()):
    from focus.config import get_focus_cfg

    return get_focus_cfg(f"run/{name}", list(opts))


def test_run_r50_matches_manifest(shared_reference):
    """Keys, shapes and dtypes of the released model (1636 keys); SOFS keys listed apart in the manifest."""
    from detectron2.modeling import build_model

    manifest = json.loads((shared_reference / "run" / "state_dict_run.json").read_text())
    with torch.device("meta"):
        model = build_model(_cfg("run_r50.yaml", ["MODEL.DEVICE", "meta"]))
    own = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()}
    ref = {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in manifest["entries"]}
    released = {k: v for k, v in own.items() if not k.startswith("selective_mamba.")}
    assert released == ref
    sofs = {k.replace("selective_mamba.", "", 1): v for k, v in own.items() if k.startswith("selective_mamba.")}
    ref_sofs = manifest["not_in_state_dict_built_inside_forward"]["entries"]
    ref_sofs = {e["key"].split("selective_mamba.", 1)[-1]: (tuple(e["shape"]), e.get("dtype", "float32"))
                for e in ref_sofs}
    assert {k: v[0] for k, v in sofs.items()} == {k: v[0] for k, v in ref_sofs.items()}
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("selective_mamba."))
    assert params == manifest["total_parameters"] == 79154124


@pytest.mark.parametrize("size", [352, 400, 320])
def test_input_size_error_names_key(size):
    from detectron2.modeling import build_model

    from focus.data.mappers import build_mapper

    cfg = _cfg("tiny.yaml", ["MODEL.RUN.INPUT_SIZE", str(size)])
    with pytest.raises(ValueError, match=r"MODEL.RUN.INPUT_SIZE.*multiple of 64.*384"):
        build_model(cfg)
    with pytest.raises(ValueError, match="MODEL.RUN.INPUT_SIZE"):
        build_mapper(cfg, is_train=False)


def test_tiny_eval_contract(single_thread):
    import numpy as np
    from detectron2.modeling import build_model

    from focus.data.mappers import build_mapper

    torch.manual_seed(0)
    cfg = _cfg("tiny.yaml")
    model = build_model(cfg).eval()
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    inp = build_mapper(cfg, is_train=False).map_image(img)
    assert inp["image"].shape == (3, 384, 384) and (inp["height"], inp["width"]) == (50, 70)
    with torch.no_grad():
        out = model([inp])[0]
    fg, mask = out["foreground"], out["mask"]
    assert fg.shape == (50, 70) and fg.dtype == torch.float32 and mask.shape == (50, 70)
    assert fg.min().item() == 0.0 and abs(fg.max().item() - 1.0) < 1e-4  # the per-image min-max (+1e-8 in the denominator)
    assert torch.equal(mask, (fg > 0.5).to(torch.uint8))


@pytest.mark.slow  # one fp32 step of batch 2 at 384 px: about 60 s on one busy core
def test_tiny_losses_and_frozen_parts(single_thread):
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = build_model(_cfg("tiny.yaml")).train()
    inp = {"image": torch.randint(0, 256, (3, 384, 384), dtype=torch.uint8), "height": 384, "width": 384}
    gt = torch.zeros(1, 384, 384)
    gt[:, 100:200, 120:260] = 1
    batch = [{**inp, "gt": gt, "edge": gt}] * 2  # GPM pools to 1x1 before a BatchNorm: batch >= 2
    with EventStorage(0) as storage:
        losses = model(batch)
        assert set(losses) == {"loss_init", "loss_final", "loss_edge", "loss_ual"}  # reconstruction not added
        assert "run_loss_reconstruction_not_added" in storage.latest()
        sum(losses.values()).backward()
    assert all(p.grad is None for p in model.selective_mamba.parameters())  # frozen like the official block
    assert model.adjustIllu_model.extract.weight.grad is None  # ROBE untrained without the reconstruction loss
    assert model.REM11.REU_f1.out_y[2].weight.grad is not None
