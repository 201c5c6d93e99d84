"""The real CLIP refiner (ViT-B/16, random weights, built offline once for the module): official state-dict
keys and shapes (golden_dev/keys.txt), frozen parameters, buffers, one region-feature forward."""

import pytest
import torch

from focus.modeling.clip_refiner import FOCUSCLIPRefiner, ProjectionHead

PREFIX = "sem_seg_head.predictor.clip_refiner."
PROMPTS = [
    "It’s an image of salient objects without background.",
    "It’s an image of background with salient objects removed.",
]


@pytest.fixture(scope="module")
def refiner():
    return FOCUSCLIPRefiner(prompts=PROMPTS, text_templates=("a photo of a {}.",), allow_random_weights=True)


def _official_keys(reference, prefix):
    keys = {}
    for line in (reference / "golden_dev" / "keys.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        name, shape = line.split("\t")[:2]
        if name.startswith(prefix):
            keys[name[len(prefix) :]] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return keys


def test_state_dict_equals_official_keys_and_shapes(refiner, shared_reference):
    official = _official_keys(shared_reference, PREFIX)
    assert len(official) == 306
    ours = {k: tuple(v.shape) for k, v in refiner.state_dict().items()}
    assert ours == official


def test_projection_head_keys_match_official(shared_reference):
    official = _official_keys(shared_reference, "sem_seg_head.predictor.text_embed.")
    assert {k: tuple(v.shape) for k, v in ProjectionHead(512, 512).state_dict().items()} == official


def test_frozen_except_mask_embedding_and_buffers(refiner, shared_reference):
    trainable = {n for n, p in refiner.named_parameters() if p.requires_grad}
    assert trainable == {"clip_model.visual.mask_embedding", "non_object_embedding"}
    assert refiner.clip_model.visual.mask_embedding.shape == (3, 196, 768)
    assert 0.015 < refiner.clip_model.visual.mask_embedding.std() < 0.025
    golden = torch.load(shared_reference / "golden_dev" / "weights_fp16.pth", weights_only=False)["model"]
    for name in ("pixel_mean", "pixel_std"):  # golden values are perturbed by small noise
        torch.testing.assert_close(getattr(refiner, name), golden[PREFIX + name].float(), atol=0.5, rtol=0)
    torch.testing.assert_close(refiner.pixel_mean.flatten(), 255 * torch.tensor([0.48145466, 0.4578275, 0.40821073]))


def test_region_features_forward(refiner):
    images = torch.randn(1, 3, 64, 64)
    pred_masks = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        img, txt = refiner.region_features(images, pred_masks, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))
    assert img.shape == txt.shape == (1, 2, 512)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(1, 2))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(1, 2))
    # the text rows of every prompt, the no-object one included, are encoded once and gathered on the device
    assert set(refiner.text_feature_buffer) == set(PROMPTS) | {"None"}


@pytest.mark.slow
def test_mask_embedding_gets_zero_grad_by_default(refiner):
    refiner.clip_model.visual.mask_embedding.grad = None
    pred_masks = torch.randn(1, 2, 16, 16, requires_grad=True)
    img, _ = refiner.region_features(torch.randn(1, 3, 64, 64), pred_masks, torch.zeros(1, 2, 3))
    img.sum().backward()
    assert refiner.clip_model.visual.mask_embedding.grad.abs().max() == 0
    assert all(p.grad is None for n, p in refiner.clip_model.named_parameters() if n != "visual.mask_embedding")
