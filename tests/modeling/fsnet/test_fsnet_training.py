"""FSNet training: the three stages through tools/train_net.py with a tiny model, stage-to-stage transfer."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def _tiny_vos(src, dst, n=3, size=(96, 54)):
    for seq in ("dog", "blackswan"):
        for sub in ("frames", "masks"):
            (dst / seq / sub).mkdir(parents=True)
            for f in sorted((src / seq / sub).iterdir())[:n]:
                resample = Image.NEAREST if sub == "masks" else Image.BILINEAR
                Image.open(f).resize(size, resample).save(dst / seq / sub / (f.stem + ".png"))
    return dst


def _run(train_net, config, opts, eval_only=False):
    args = train_net.get_parser().parse_args(
        ["--config-file", str(config)] + (["--eval-only"] if eval_only else []) + [str(o) for o in opts])
    return train_net.main(args)


def test_stage_configs_load():
    from focus.engine.trainer import setup_cfg

    s1, s2, s3 = (setup_cfg(str(ROOT / f"configs/fsnet/{n}.yaml"))
                  for n in ("stage1_rgb", "stage2_flow", "stage3_finetune"))
    assert (s1.MODEL.FSNET.STREAMS, s2.MODEL.FSNET.STREAMS, s3.MODEL.FSNET.STREAMS) == ("rgb", "flow", "rgb+flow")
    assert s3.MODEL.FSNET.TRANSFER.APPEARANCE_WEIGHTS.startswith(s1.OUTPUT_DIR)
    assert s3.MODEL.FSNET.TRANSFER.MOTION_WEIGHTS.startswith(s2.OUTPUT_DIR)


def test_three_stages_and_eval(shared_data, tmp_path, single_thread, load_tool):
    data = _tiny_vos(shared_data / "vos" / "DAVIS2016-sample", tmp_path / "vos")
    ds = f"('folder:vos:{data}',)"
    tn = load_tool("train_net")
    base = ["SOLVER.MAX_ITER", 3, "SOLVER.STEPS", "(2,)", "SOLVER.IMS_PER_BATCH", 2, "DATASETS.TRAIN", ds,
            "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", 1000]
    cfg = ROOT / "configs/fsnet/tiny.yaml"
    out1, out2, out3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    _run(tn, cfg, base + ["MODEL.FSNET.STREAMS", "rgb", "OUTPUT_DIR", out1])
    _run(tn, cfg, base + ["MODEL.FSNET.STREAMS", "flow", "OUTPUT_DIR", out2])
    # simulate the official DataParallel prefix on the stage-2 file: the transfer must not care
    s2 = torch.load(out2 / "model_final.pth", weights_only=False)["model"]
    torch.save({"module." + k: v for k, v in s2.items()}, out2 / "prefixed.pth")
    s1 = torch.load(out1 / "model_final.pth", weights_only=False)["model"]
    transfer = ["MODEL.FSNET.TRANSFER.APPEARANCE_WEIGHTS", out1 / "model_final.pth",
                "MODEL.FSNET.TRANSFER.MOTION_WEIGHTS", out2 / "prefixed.pth"]
    from focus.engine.trainer import Trainer, setup_cfg

    s3 = Trainer.build_model(setup_cfg(str(cfg), [str(o) for o in transfer])).state_dict()
    assert torch.equal(s3["resnet.layer1_flow.0.conv1.weight"], s2["resnet.layer1_flow.0.conv1.weight"])
    assert torch.equal(s3["resnet.layer1_flow.0.bn1.running_mean"], s1["resnet.layer1_flow.0.bn1.running_mean"])
    assert torch.equal(s3["resnet.layer1_rgb.0.conv1.weight"], s1["resnet.layer1_rgb.0.conv1.weight"])
    assert torch.equal(s3["bpm1.conv_f1.0.conv_bn.0.weight"], s1["bpm1.conv_f1.0.conv_bn.0.weight"])
    assert not torch.equal(s1["resnet.layer1_flow.0.conv1.weight"], s2["resnet.layer1_flow.0.conv1.weight"])
    _run(tn, cfg, base + ["MODEL.FSNET.STREAMS", "rgb+flow", "OUTPUT_DIR", out3] + transfer)
    res = _run(tn, cfg, ["MODEL.WEIGHTS", out3 / "model_final.pth", "DATASETS.TEST", ds, "OUTPUT_DIR", out3],
               eval_only=True)
    metrics = next(iter(res.values()))
    assert {"J_mean", "F_mean", "J&F_mean"} <= set(metrics)
    assert all(np.isfinite(metrics[k]) for k in ("J_mean", "F_mean", "J&F_mean"))


def test_train_step_per_stage(single_thread):
    """One official step per stage: the multi-scale cycle (256/352/448 at S=352; here 96/128/160) and both losses."""
    from focus.engine.trainer import Trainer, setup_cfg

    model = Trainer.build_model(setup_cfg(str(ROOT / "configs/fsnet/tiny.yaml"))).train()
    g = torch.Generator().manual_seed(0)
    sizes = []
    orig = model.network
    model.network = lambda x, y: sizes.append(x.shape[-1]) or orig(x, y)
    for streams in ("rgb", "flow", "rgb+flow"):
        model.streams = streams
        batch = [{"image": torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8, generator=g),
                  "flow": torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8, generator=g),
                  "sem_seg": torch.rand(128, 128, generator=g)} for _ in range(2)]
        if streams == "flow":
            for d in batch:
                del d["image"]
        if streams == "rgb":
            for d in batch:
                del d["flow"]
        losses = model(batch)
        assert set(losses) == {"loss_s", "loss_e"} and all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
    assert sizes == [96, 128, 160]
