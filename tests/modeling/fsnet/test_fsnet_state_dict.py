"""The model built from configs/fsnet/fsnet.yaml has exactly the released snapshot's keys, shapes and dtypes."""
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


def test_released_manifest(shared_reference):
    from detectron2.modeling import META_ARCH_REGISTRY

    from focus.engine.trainer import setup_cfg

    manifest = json.loads((shared_reference / "fsnet" / "state_dict_fsnet.json").read_text())
    cfg = setup_cfg(str(ROOT / "configs/fsnet/fsnet.yaml"), ["MODEL.DEVICE", "cpu"])
    with torch.device("meta"):  # shapes and dtypes only: no 400 MB allocation
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    sd = model.state_dict()
    entries = manifest["entries"]
    assert len(entries) == manifest["num_state_dict_keys"] == 2160
    assert list(sd) == [e["key"] for e in entries]
    for e in entries:
        t = sd[e["key"]]
        assert list(t.shape) == e["shape"], e["key"]
        assert str(t.dtype).replace("torch.", "") == e["dtype"], e["key"]
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == manifest["total_parameters"]
    for e in entries:
        assert (e["key"] in params) == (e["kind"] == "parameter"), e["key"]
    assert manifest["released_file_key_prefix"] == "module."
    released = {"module." + k: None for k in sd}
    assert set(model.checkpoint_filter_fn(released)) == set(sd)


def test_imagenet_init_and_torchvision_function():
    """The trunks compute torchvision's ResNet-50 function and take its ImageNet state dict (#q18)."""
    import torchvision

    from focus.modeling.fsnet.fsnet import FSNetResNet

    torch.manual_seed(0)
    tv = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1]).eval()
    trunks = FSNetResNet((1, 1, 1, 1)).eval()
    trunks.load_imagenet(tv.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        for suffix in ("_rgb", "_flow", ""):
            t = trunks.trunk(suffix)
            y = t["layer4"](t["layer3"](t["layer2"](t["layer1"](t["maxpool"](trunks.stem(x, suffix))))))
            torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
