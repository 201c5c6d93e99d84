"""`SyncBatchNorm2d`: batch normalisation with statistics over every process, on any device.

`nn.SyncBatchNorm` computes its statistics with CUDA kernels and refuses CPU tensors once a process group exists,
so a multi-process CPU run (gloo) cannot use it. This layer computes the same function with two differentiable
all-reduces (sum and count, then the centred sum of squares): the mean and the biased variance of the union of the
per-process batches normalise, the unbiased variance of the union updates `running_var`, and the gradients flow
across processes. Outside distributed training, and in eval, it is `nn.BatchNorm2d` (same keys, same numerics).
"""
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["SyncBatchNorm2d"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's copy is the sum of the gradients of all copies."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _sync_active(module):
    return module.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SyncBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training-mode statistics cover the batches of all processes (see module docstring).

    Input `(N, C, H, W)`; the per-process batches may differ in size (statistics are count-weighted).
    """

    def forward(self, x):
        if not _sync_active(self):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        count = torch.full((1,), xf.numel() // xf.shape[1], dtype=xf.dtype, device=xf.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:-1] / total
        centred = xf - mean.view(1, -1, 1, 1)
        var = all_reduce((centred * centred).sum((0, 2, 3))) / total
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return y.to(x.dtype)
