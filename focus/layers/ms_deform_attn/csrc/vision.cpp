// Python bindings of the deformable-attention kernels: `focus._C` (with WITH_CUDA) or the JIT CPU extension.
#include "ms_deform_attn.h"

#include <torch/extension.h>

#include <ATen/OpMathType.h>

#ifdef WITH_CUDA
#include "focus_build_info.h"
#endif

namespace focus {

void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                 const at::Tensor& attn_weight) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (N, S, M, Dh), got ", value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2 &&
                  spatial_shapes.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes must be int64 (L, 2)");
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.scalar_type() == at::kLong &&
                  level_start_index.size(0) == spatial_shapes.size(0),
              "ms_deform_attn: level_start_index must be int64 (L,)");
  const auto n = value.size(0), m = value.size(2), l = spatial_shapes.size(0);
  TORCH_CHECK(sampling_loc.dim() == 6 && sampling_loc.size(0) == n && sampling_loc.size(2) == m &&
                  sampling_loc.size(3) == l && sampling_loc.size(5) == 2,
              "ms_deform_attn: sampling_loc must be (N, Lq, M, L, P, 2) matching value ", value.sizes(),
              " and spatial_shapes, got ", sampling_loc.sizes());
  TORCH_CHECK(attn_weight.sizes() == sampling_loc.sizes().slice(0, 5),
              "ms_deform_attn: attn_weight must be (N, Lq, M, L, P) = ", sampling_loc.sizes().slice(0, 5),
              ", got ", attn_weight.sizes());
  const auto acc = at::toOpMathType(value.scalar_type());
  TORCH_CHECK(sampling_loc.scalar_type() == acc && attn_weight.scalar_type() == acc,
              "ms_deform_attn: sampling_loc and attn_weight must be ", acc, " for ", value.scalar_type(),
              " value, got ", sampling_loc.scalar_type(), " and ", attn_weight.scalar_type());
  for (const auto* t : {&value, &spatial_shapes, &level_start_index, &sampling_loc, &attn_weight}) {
    TORCH_CHECK(t->is_contiguous(), "ms_deform_attn: inputs must be contiguous");
    TORCH_CHECK(t->device() == value.device(), "ms_deform_attn: all inputs must be on ", value.device());
  }
}

at::Tensor ms_deform_attn_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                  const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                  const at::Tensor& attn_weight, int64_t im2col_step) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return ms_deform_attn_cuda_forward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight,
                                       im2col_step);
#else
    TORCH_CHECK(false, "ms_deform_attn: this extension was built without CUDA");
#endif
  }
  return ms_deform_attn_cpu_forward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight,
                                    im2col_step);
}

std::vector<at::Tensor> ms_deform_attn_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                                const at::Tensor& attn_weight, const at::Tensor& grad_output,
                                                int64_t im2col_step) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight);
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.dim() == 3 && grad_output.size(0) == value.size(0) &&
                  grad_output.size(1) == sampling_loc.size(1) &&
                  grad_output.size(2) == value.size(2) * value.size(3),
              "ms_deform_attn: grad_output must be contiguous (N, Lq, M*Dh) of value's dtype");
  if (value.is_cuda()) {
#ifdef WITH_CUDA
    return ms_deform_attn_cuda_backward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight,
                                        grad_output, im2col_step);
#else
    TORCH_CHECK(false, "ms_deform_attn: this extension was built without CUDA");
#endif
  }
  return ms_deform_attn_cpu_backward(value, spatial_shapes, level_start_index, sampling_loc, attn_weight,
                                     grad_output, im2col_step);
}

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_arch_list() {
#ifdef WITH_CUDA
  return FOCUS_CUDA_ARCH_LIST;
#else
  return "";
#endif
}

}  // namespace focus

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ms_deform_attn_forward", &focus::ms_deform_attn_forward, "multi-scale deformable attention forward");
  m.def("ms_deform_attn_backward", &focus::ms_deform_attn_backward,
        "multi-scale deformable attention backward -> (grad_value, grad_sampling_loc, grad_attn_weight)");
  m.def("with_cuda", &focus::with_cuda, "whether the CUDA kernel was compiled in");
  m.def("cuda_arch_list", &focus::cuda_arch_list, "TORCH_CUDA_ARCH_LIST the CUDA kernel was compiled for");
}
