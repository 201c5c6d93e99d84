"""focus.modeling.packing: oneDNN-packed nn.Linear for CPU inference, and its round trips."""
from pathlib import Path

import pytest
import torch
from torch import nn

from focus.modeling.packing import onednn_linear_available, pack_linears, packed_linear_names, unpack_linears

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="PyTorch built without oneDNN")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8, bias=False), nn.MultiheadAttention(8, 2))


def test_packed_forward_matches_and_state_dict_stays_dense():
    net = _mlp()
    x = torch.randn(2, 5, 16)
    ref = net[:3](x)
    dense = {k: v.clone() for k, v in net.state_dict().items()}
    weight = net[0].weight
    assert pack_linears(net) == 2  # the attention's out-projection is read directly by attention: not packed
    assert packed_linear_names(net) == ["0", "2"] and weight.numel() == 0 and net[0].weight is weight
    torch.testing.assert_close(net[:3](x), ref, rtol=1e-5, atol=1e-6)
    sd = net.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in dense.items())
    assert unpack_linears(net) == 2 and torch.equal(net[0].weight, dense["0.weight"]) and net[0].weight is weight
    torch.testing.assert_close(net[:3](x), ref, rtol=0, atol=0)


def test_loading_into_a_packed_layer_unpacks_it():
    net = _mlp()
    pack_linears(net)
    new = {k: torch.full_like(v, 0.5) for k, v in _mlp().state_dict().items()}
    net.load_state_dict(new)
    assert packed_linear_names(net) == [] and torch.equal(net[0].weight, new["0.weight"])


def test_bf16_and_a_callers_autocast():
    net = _mlp()[:3]
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = net(x)
        pack_linears(net)  # fp32 weights under a bf16 autocast: the autocast semantics are kept
        out = net(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref)
    if onednn_linear_available(torch.bfloat16):
        unpack_linears(net)
        net.to(torch.bfloat16)
        ref = net(x.bfloat16())
        pack_linears(net)
        torch.testing.assert_close(net(x.bfloat16()), ref, rtol=2e-2, atol=2e-2)


_PACK_RSS_CHILD = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from malloc_policy import configure_malloc
import focus.modeling.packing as packing
if sys.argv[1] == "no-trim":
    packing._release_freed_heap = lambda: None
configure_malloc("keep")  # the inference tools' policy: every weight lives in glibc's heap
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
torch.manual_seed(0)
nn = torch.nn
def block(d=1024):  # ViT-L-like: weights of mixed sizes with small tensors between them, as in FOCUS-L
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d),
                         nn.Linear(d, 4 * d), nn.Linear(4 * d, d))
net = nn.Sequential(*[block() for _ in range(6)])  # 288 MiB of weights
before = rss()
with torch.no_grad():
    packing.pack_linears(net)
print(rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
@pytest.mark.resources
def test_packing_returns_the_dense_weights_memory():
    """Each packed copy is allocated before its dense weight is freed, and the 64-byte-aligned copies do not fit
    the freed holes: without the per-layer heap trim, packing FOCUS-L raised the RSS by 0.7 GB."""
    import subprocess
    import sys

    from focus.libc import glibc

    if glibc() is None:
        pytest.skip("glibc only")
    grown = float(subprocess.run([sys.executable, "-c", _PACK_RSS_CHILD, "trim", str(ROOT / "tools")], capture_output=True, text=True,
                                 check=True, cwd=ROOT).stdout.split()[-1])
    # measured: +5 MiB, and +50 to +146 MiB without the trim
    assert grown < 29, f"packing 288 MiB of weights grew the RSS by {grown:.0f} MiB"
