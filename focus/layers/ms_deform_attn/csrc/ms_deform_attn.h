// Multi-scale deformable attention kernels (docs/focus.md#msda-op). Shapes:
//   value (N, S, M, Dh); spatial_shapes int64 (L, 2) rows (H, W); level_start_index int64 (L,);
//   sampling_loc (N, Lq, M, L, P, 2) normalised (x, y); attn_weight (N, Lq, M, L, P); output (N, Lq, M*Dh).
// value/output/grad_value have the value dtype (double, float, half, bfloat16); sampling_loc, attn_weight and
// their gradients have its accumulation type (at::opmath_type: float for half/bfloat16).
#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

namespace focus {

void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                 const at::Tensor& attn_weight);

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, int64_t im2col_step);

std::vector<at::Tensor> ms_deform_attn_cpu_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                    const at::Tensor& level_start_index,
                                                    const at::Tensor& sampling_loc, const at::Tensor& attn_weight,
                                                    const at::Tensor& grad_output, int64_t im2col_step);

#ifdef WITH_CUDA
at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                       const at::Tensor& attn_weight, int64_t im2col_step);

std::vector<at::Tensor> ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_loc, const at::Tensor& attn_weight,
                                                     const at::Tensor& grad_output, int64_t im2col_step);
#endif

}  // namespace focus
