"""focus.modeling.precision: which parameters autocast rounds, and storing them in reduced precision."""
import torch
from torch import nn

from focus.modeling.precision import autocast_parameter_names, store_parameters_in


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.attn = nn.MultiheadAttention(8, 2)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 4)
        self.proj = nn.Parameter(torch.randn(4, 4))
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        x = self.bn(self.up(self.conv(x))).flatten(2).permute(2, 0, 1)  # (HW, B, 8)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return (self.fc(self.norm(x)) @ self.proj) * self.scale


def test_autocast_parameter_names():
    names = autocast_parameter_names(_Net(), extra=("proj", "missing"))
    assert names == {
        "conv.weight", "conv.bias", "up.weight", "attn.in_proj_weight", "attn.in_proj_bias",
        "attn.out_proj.weight", "attn.out_proj.bias", "fc.weight", "fc.bias", "proj",
    }


def test_stored_weights_are_bit_identical_under_autocast():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = net(x)
        store_parameters_in(net, autocast_parameter_names(net, extra=("proj",)), torch.bfloat16)
        out = net(x)
    assert net.fc.weight.dtype == torch.bfloat16 and net.norm.weight.dtype == torch.float32
    assert torch.equal(out, ref)


def test_others_restores_a_model_built_in_bf16():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        net = _Net()
    finally:
        torch.set_default_dtype(old)
    store_parameters_in(net, autocast_parameter_names(net), torch.bfloat16, others=torch.float32)
    assert net.conv.weight.dtype == torch.bfloat16 and net.scale.dtype == torch.float32
    assert net.bn.running_var.dtype == torch.float32 and net.bn.num_batches_tracked.dtype == torch.long
    parameters = dict(net.named_parameters())
    assert all(parameters[n].dtype == torch.float32 for n in ("proj", "norm.weight", "bn.weight"))
