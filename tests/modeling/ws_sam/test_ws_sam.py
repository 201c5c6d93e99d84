"""The WS-SAM member on a tiny random model: contract outputs, size check, CPU, losses, building blocks."""
import math

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from focus.data.mappers import MAPPER_REGISTRY
from focus.engine.trainer import setup_cfg
from focus.modeling.ws_sam.modules import SlotAttention, position_grid

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/tiny.yaml"))
    return cfg, build_model(cfg)


def test_eval_contract(tiny, single_thread):
    cfg, model = tiny
    model.eval()
    mapper = MAPPER_REGISTRY.get(cfg.INPUT.TEST_MAPPER_NAME)(cfg, False)
    image = np.random.RandomState(0).randint(0, 256, (50, 70, 3), dtype=np.uint8)
    inputs = mapper.map_image(image)
    assert inputs["image"].shape == (3, 128, 128) and (inputs["height"], inputs["width"]) == (50, 70)
    with torch.no_grad():
        out = model([inputs, inputs])
    fg = out[0]["foreground"]
    assert fg.shape == (50, 70) and fg.dtype == torch.float32
    assert fg.min() == 0 and abs(fg.max().item() - 1) < 1e-4  # per-image min-max (official)
    assert torch.equal(out[0]["mask"], (fg > 0.5).to(torch.uint8))
    assert torch.equal(out[0]["foreground"], out[1]["foreground"])
    model.test_minmax = False
    with torch.no_grad():
        raw = model([inputs])[0]["foreground"]
    model.test_minmax = True
    prob = torch.sigmoid(torch.nn.functional.interpolate(out[0]["logits"][None], (50, 70), mode="bilinear"))[0, 0]
    torch.testing.assert_close(raw, prob)


def test_wrong_size_names_the_key(tiny):
    cfg, model = tiny
    model.eval()
    with pytest.raises(ValueError, match="INPUT.WS_SAM.SIZE"):
        model([{"image": torch.zeros(3, 96, 96, dtype=torch.uint8), "height": 96, "width": 96}])


def test_checkpoint_filter_strips_prefixes(tiny):
    _, model = tiny
    sd = {"module.GPM.out.2.weight": 1, "_orig_mod.rem_decoder.x": 2, "GPM.y": 3}
    assert model.checkpoint_filter_fn(sd) == {"GPM.out.2.weight": 1, "rem_decoder.x": 2, "GPM.y": 3}


def test_grid_not_in_state_dict_and_follows_device(tiny):
    _, model = tiny
    assert not any("grid" in k for k in model.state_dict())
    grid = model.gcm_interFA.ODE4.SAn.encoder_pos.grid
    assert grid.shape == (1, 4, 4, 4)
    torch.testing.assert_close(grid[0, :, 0, 0], torch.linspace(0, 1, 4))  # rows
    torch.testing.assert_close(grid[0, 0, :, 1], torch.linspace(0, 1, 4))  # columns
    torch.testing.assert_close(grid[..., 2:], 1 - grid[..., :2])


def test_slot_attention_matches_hand_computation():
    torch.manual_seed(1)
    sa = SlotAttention(num_slots=3, dim=8, iters=1, hidden_dim=8)
    x = torch.randn(2, 5, 8)
    out = sa(x)
    inp = sa.norm_input(x)
    k, v = sa.project_k(inp), sa.project_v(inp)
    slots = sa.slots_embedding.weight[None].expand(2, -1, -1)
    q = sa.project_q(sa.norm_slots(slots))
    attn = torch.softmax(torch.einsum("bsd,bnd->bsn", q, k) / math.sqrt(8), dim=1) + 1e-8
    attn = attn / attn.sum(-1, keepdim=True)
    upd = torch.einsum("bsn,bnd->bsd", attn, v)
    new = sa.gru(upd.reshape(-1, 8), slots.reshape(-1, 8)).view(2, 3, 8)
    new = new + sa.mlp(sa.norm_pre_ff(new))
    torch.testing.assert_close(out, new)


def test_position_grid_values():
    g = position_grid((2, 3))
    assert g.shape == (1, 2, 3, 4)
    torch.testing.assert_close(g[0, 1, 2], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(g[0, 0, 1], torch.tensor([0.0, 0.5, 1.0, 0.5]))


def test_evaluation_through_the_trainer(tiny, tmp_path, single_thread):
    """The trainer's test loader builds the registered WS-SAM test mapper; the evaluator scores `foreground`."""
    from focus.data.synthetic import generate_dataset
    from focus.engine.trainer import FOCUSTrainer

    split = generate_dataset(tmp_path, "sod", n_train=0, n_test=2, size=(48, 40), seed=0)["test"]
    name = f"folder:sod:{split / 'images'}:{split / 'masks'}"
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/tiny.yaml"),
                    ["DATASETS.TEST", f"('{name}',)", "OUTPUT_DIR", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0"])
    _, model = tiny
    res = FOCUSTrainer.test(cfg, model.eval())
    metrics = res[name]
    assert metrics and all(np.isfinite(v) for v in metrics.values()), metrics
