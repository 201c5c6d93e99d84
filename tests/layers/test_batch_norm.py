"""`SyncBatchNorm2d` over two CPU processes (gloo) equals `nn.BatchNorm2d` on the union of their batches:
outputs, input and parameter gradients, running statistics."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from focus.layers.batch_norm import SyncBatchNorm2d


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, 6, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.randn(5, 3, 4, 6, generator=g, dtype=torch.float64)  # upstream gradient weights
    return x, w


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x, w = _data()
    sl = slice(0, 2) if rank == 0 else slice(2, 5)  # unequal batches: count-weighted statistics
    bn = SyncBatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    xi = x[sl].clone().requires_grad_(True)
    y = bn(xi)
    (y * w[sl]).sum().backward()
    dist.all_reduce(bn.weight.grad)
    dist.all_reduce(bn.bias.grad)
    torch.save({"y": y.detach(), "gx": xi.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                "rm": bn.running_mean, "rv": bn.running_var}, os.path.join(out_dir, f"{rank}.pth"))
    dist.destroy_process_group()


def test_sync_batch_norm_two_processes_equals_one_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "0.pth"), torch.load(tmp_path / "1.pth")

    x, w = _data()
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    xr = x.clone().requires_grad_(True)
    y = bn(xr)
    (y * w).sum().backward()

    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach())
    torch.testing.assert_close(torch.cat([r0["gx"], r1["gx"]]), xr.grad)
    for r in (r0, r1):
        torch.testing.assert_close(r["gw"], bn.weight.grad)
        torch.testing.assert_close(r["gb"], bn.bias.grad)
        torch.testing.assert_close(r["rm"], bn.running_mean)
        torch.testing.assert_close(r["rv"], bn.running_var)


def test_single_process_is_batch_norm():
    x, _ = _data()
    sync, plain = SyncBatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    assert set(sync.state_dict()) == set(plain.state_dict())
    torch.testing.assert_close(sync(x), plain(x), rtol=0, atol=0)
    torch.testing.assert_close(sync.running_var, plain.running_var, rtol=0, atol=0)
