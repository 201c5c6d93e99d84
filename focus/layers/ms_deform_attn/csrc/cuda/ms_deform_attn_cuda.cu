// CUDA kernels of multi-scale deformable attention: the semantics of the official
// `ms_deformable_im2col_gpu_kernel` / `col2im` kernels (docs/focus.md#msda-op) on modern ATen APIs (docs/focus.md#q15:
// no THC, no tensor.type()), dispatched for double, float, half and bfloat16. One thread per output element
// (n, q, m, channel); sampling locations, attention weights and all accumulations use at::opmath_type
// (float for half/bfloat16); grad_value is accumulated in opmath and cast at the end.
#include "../ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
// c10's stream header rather than ATen/cuda/CUDAContext.h (same at::cuda::getCurrentCUDAStream): the latter pulls
// in cuBLAS/cuSPARSE headers, absent from minimal CUDA toolkits such as the one this project is built with.
#include <c10/cuda/CUDAStream.h>

namespace focus {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) { return static_cast<unsigned int>((n + kThreads - 1) / kThreads); }

struct Dims {
  int64_t n, s, m, dh, lq, l, p;
};

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const int64_t total, const scalar_t* __restrict__ value,
                               const int64_t* __restrict__ shapes, const int64_t* __restrict__ start,
                               const acc_t* __restrict__ loc, const acc_t* __restrict__ attn,
                               scalar_t* __restrict__ out, const Dims d) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t ch = idx % d.dh;
  const int64_t i = idx / d.dh;  // (n, q, m)
  const int64_t m = i % d.m, n = i / (d.lq * d.m);
  const int64_t row = d.m * d.dh;
  const acc_t* loc_i = loc + i * d.l * d.p * 2;
  const acc_t* attn_i = attn + i * d.l * d.p;
  acc_t acc = 0;
  for (int64_t l = 0; l < d.l; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const scalar_t* v_l = value + (n * d.s + start[l]) * row + m * d.dh + ch;
    for (int64_t p = 0; p < d.p; ++p) {
      const int64_t j = l * d.p + p;
      const acc_t h_im = loc_i[2 * j + 1] * height - acc_t(0.5);
      const acc_t w_im = loc_i[2 * j] * width - acc_t(0.5);
      if (!(h_im > -1 && w_im > -1 && h_im < height && w_im < width)) continue;
      const acc_t h_floor = floor(h_im), w_floor = floor(w_im);
      const int64_t h_low = static_cast<int64_t>(h_floor), w_low = static_cast<int64_t>(w_floor);
      const acc_t lh = h_im - h_floor, lw = w_im - w_floor, hh = 1 - lh, hw = 1 - lw;
      acc_t val = 0;
      if (h_low >= 0 && w_low >= 0) val += hh * hw * static_cast<acc_t>(v_l[(h_low * width + w_low) * row]);
      if (h_low >= 0 && w_low + 1 < width)
        val += hh * lw * static_cast<acc_t>(v_l[(h_low * width + w_low + 1) * row]);
      if (h_low + 1 < height && w_low >= 0)
        val += lh * hw * static_cast<acc_t>(v_l[((h_low + 1) * width + w_low) * row]);
      if (h_low + 1 < height && w_low + 1 < width)
        val += lh * lw * static_cast<acc_t>(v_l[((h_low + 1) * width + w_low + 1) * row]);
      acc += attn_i[j] * val;
    }
  }
  out[idx] = static_cast<scalar_t>(acc);
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const int64_t total, const scalar_t* __restrict__ value,
                                const int64_t* __restrict__ shapes, const int64_t* __restrict__ start,
                                const acc_t* __restrict__ loc, const acc_t* __restrict__ attn,
                                const scalar_t* __restrict__ grad_out, acc_t* __restrict__ grad_value,
                                acc_t* __restrict__ grad_loc, acc_t* __restrict__ grad_attn, const Dims d) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t ch = idx % d.dh;
  const int64_t i = idx / d.dh;
  const int64_t m = i % d.m, n = i / (d.lq * d.m);
  const int64_t row = d.m * d.dh;
  const acc_t g = static_cast<acc_t>(grad_out[idx]);
  const acc_t* loc_i = loc + i * d.l * d.p * 2;
  const acc_t* attn_i = attn + i * d.l * d.p;
  for (int64_t l = 0; l < d.l; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const int64_t base = (n * d.s + start[l]) * row + m * d.dh + ch;
    const scalar_t* v_l = value + base;
    acc_t* gv_l = grad_value + base;
    for (int64_t p = 0; p < d.p; ++p) {
      const int64_t j = l * d.p + p;
      const acc_t h_im = loc_i[2 * j + 1] * height - acc_t(0.5);
      const acc_t w_im = loc_i[2 * j] * width - acc_t(0.5);
      if (!(h_im > -1 && w_im > -1 && h_im < height && w_im < width)) continue;
      const acc_t h_floor = floor(h_im), w_floor = floor(w_im);
      const int64_t h_low = static_cast<int64_t>(h_floor), w_low = static_cast<int64_t>(w_floor);
      const acc_t lh = h_im - h_floor, lw = w_im - w_floor, hh = 1 - lh, hw = 1 - lw;
      const acc_t a = attn_i[j], ga = a * g;
      acc_t val = 0, grad_h = 0, grad_w = 0;
      auto corner = [&](int64_t h, int64_t w, acc_t weight, acc_t d_h, acc_t d_w) {
        if (h < 0 || w < 0 || h >= height || w >= width) return;
        const int64_t off = (h * width + w) * row;
        const acc_t v = static_cast<acc_t>(v_l[off]);
        val += weight * v;
        grad_h += d_h * v;
        grad_w += d_w * v;
        gpuAtomicAdd(gv_l + off, weight * ga);
      };
      corner(h_low, w_low, hh * hw, -hw, -hh);
      corner(h_low, w_low + 1, hh * lw, -lw, hh);
      corner(h_low + 1, w_low, lh * hw, hw, -lh);
      corner(h_low + 1, w_low + 1, lh * lw, lw, lh);
      // sum over channels of the per-channel terms (the official kernel reduces in shared memory)
      gpuAtomicAdd(grad_attn + i * d.l * d.p + j, g * val);
      gpuAtomicAdd(grad_loc + (i * d.l * d.p + j) * 2, width * grad_w * ga);
      gpuAtomicAdd(grad_loc + (i * d.l * d.p + j) * 2 + 1, height * grad_h * ga);
    }
  }
}

Dims dims_of(const at::Tensor& value, const at::Tensor& sampling_loc) {
  return {value.size(0), value.size(1), value.size(2), value.size(3), sampling_loc.size(1),
          sampling_loc.size(3), sampling_loc.size(4)};
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                       const at::Tensor& attn_weight, int64_t /*im2col_step*/) {
  const at::cuda::CUDAGuard guard(value.device());
  const Dims d = dims_of(value, sampling_loc);
  auto out = at::empty({d.n, d.lq, d.m * d.dh}, value.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
        total, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
        level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<acc_t>(), attn_weight.data_ptr<acc_t>(),
        out.data_ptr<scalar_t>(), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::vector<at::Tensor> ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_loc, const at::Tensor& attn_weight,
                                                     const at::Tensor& grad_output, int64_t /*im2col_step*/) {
  const at::cuda::CUDAGuard guard(value.device());
  const Dims d = dims_of(value, sampling_loc);
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(sampling_loc.scalar_type()));
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  const int64_t total = grad_output.numel();
  if (total > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
          total, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
          level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<acc_t>(), attn_weight.data_ptr<acc_t>(),
          grad_output.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>(),
          grad_attn.data_ptr<acc_t>(), d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace focus
