// CPU kernels of multi-scale deformable attention (same semantics as the official CUDA im2col/col2im kernels,
// docs/focus.md#msda-op). Forward parallelises over (n, m, q); backward over (n, m) so that each task owns its slice of
// grad_value (no atomics). Values are read in their dtype and accumulated in at::opmath_type (float for
// half/bfloat16), channels innermost so the Dh loops vectorise.
#include "../ms_deform_attn.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace focus {
namespace {

// The (up to) four bilinear corners of a sample; a corner outside the map is dropped (zero padding).
template <typename acc_t>
struct Corners {
  int64_t count = 0;
  int64_t offset[4];  // spatial index within the level
  acc_t weight[4];    // bilinear weight
  acc_t d_h[4];       // d weight / d h_im
  acc_t d_w[4];       // d weight / d w_im
};

// Returns false when the sample lies wholly outside (h_im <= -1 || h_im >= H || ...), as the CUDA kernel.
template <typename acc_t>
inline bool bilinear_corners(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width, Corners<acc_t>& c) {
  const acc_t h_im = loc_y * height - acc_t(0.5);
  const acc_t w_im = loc_x * width - acc_t(0.5);
  if (!(h_im > -1 && w_im > -1 && h_im < height && w_im < width)) return false;
  const acc_t h_floor = std::floor(h_im), w_floor = std::floor(w_im);
  const int64_t h_low = static_cast<int64_t>(h_floor), w_low = static_cast<int64_t>(w_floor);
  const acc_t lh = h_im - h_floor, lw = w_im - w_floor, hh = 1 - lh, hw = 1 - lw;
  c.count = 0;
  auto add = [&](int64_t h, int64_t w, acc_t weight, acc_t d_h, acc_t d_w) {
    if (h >= 0 && w >= 0 && h < height && w < width) {
      c.offset[c.count] = h * width + w;
      c.weight[c.count] = weight;
      c.d_h[c.count] = d_h;
      c.d_w[c.count] = d_w;
      ++c.count;
    }
  };
  add(h_low, w_low, hh * hw, -hw, -hh);
  add(h_low, w_low + 1, hh * lw, -lw, hh);
  add(h_low + 1, w_low, lh * hw, hw, -lh);
  add(h_low + 1, w_low + 1, lh * lw, lw, lh);
  return true;
}

struct Dims {
  int64_t n, s, m, dh, lq, l, p;
};

Dims dims_of(const at::Tensor& value, const at::Tensor& sampling_loc) {
  return {value.size(0), value.size(1), value.size(2), value.size(3), sampling_loc.size(1),
          sampling_loc.size(3), sampling_loc.size(4)};
}

template <typename scalar_t>
void forward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* start,
                    const at::opmath_type<scalar_t>* loc, const at::opmath_type<scalar_t>* attn, scalar_t* out,
                    const Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row = d.m * d.dh;  // stride of one spatial position in value
  // Work items ordered (n, m, q): consecutive queries gather from the same head's values (cache locality).
  at::parallel_for(0, d.n * d.m * d.lq, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(d.dh);
    Corners<acc_t> c;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t q = item % d.lq, m = (item / d.lq) % d.m, n = item / (d.lq * d.m);
      const int64_t i = (n * d.lq + q) * d.m + m;  // (n, q, m) index into loc/attn/out rows
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const acc_t* loc_i = loc + i * d.l * d.p * 2;
      const acc_t* attn_i = attn + i * d.l * d.p;
      for (int64_t l = 0; l < d.l; ++l) {
        const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
        const scalar_t* v_l = value + (n * d.s + start[l]) * row + m * d.dh;
        for (int64_t p = 0; p < d.p; ++p) {
          const int64_t j = l * d.p + p;
          if (!bilinear_corners(loc_i[2 * j], loc_i[2 * j + 1], height, width, c)) continue;
          for (int64_t k = 0; k < c.count; ++k) {
            const acc_t w = attn_i[j] * c.weight[k];
            const scalar_t* v = v_l + c.offset[k] * row;
            for (int64_t ch = 0; ch < d.dh; ++ch) acc[ch] += w * static_cast<acc_t>(v[ch]);
          }
        }
      }
      scalar_t* o = out + i * d.dh;  // (n, q, m) row of (N, Lq, M*Dh)
      for (int64_t ch = 0; ch < d.dh; ++ch) o[ch] = static_cast<scalar_t>(acc[ch]);
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* value, const int64_t* shapes, const int64_t* start,
                     const at::opmath_type<scalar_t>* loc, const at::opmath_type<scalar_t>* attn,
                     const scalar_t* grad_out, scalar_t* grad_value, at::opmath_type<scalar_t>* grad_loc,
                     at::opmath_type<scalar_t>* grad_attn, const Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row = d.m * d.dh;
  at::parallel_for(0, d.n * d.m, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gv(d.s * d.dh);  // this (n, m)'s grad_value, contiguous (S, Dh), in acc_t
    std::vector<acc_t> g(d.dh);         // grad_output row
    Corners<acc_t> c;
    for (int64_t nm = begin; nm < end; ++nm) {
      const int64_t n = nm / d.m, m = nm % d.m;
      std::fill(gv.begin(), gv.end(), acc_t(0));
      for (int64_t q = 0; q < d.lq; ++q) {
        const int64_t i = (n * d.lq + q) * d.m + m;
        const scalar_t* go = grad_out + i * d.dh;
        for (int64_t ch = 0; ch < d.dh; ++ch) g[ch] = static_cast<acc_t>(go[ch]);
        const acc_t* loc_i = loc + i * d.l * d.p * 2;
        const acc_t* attn_i = attn + i * d.l * d.p;
        acc_t* gloc_i = grad_loc + i * d.l * d.p * 2;
        acc_t* gattn_i = grad_attn + i * d.l * d.p;
        for (int64_t l = 0; l < d.l; ++l) {
          const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
          const scalar_t* v_l = value + (n * d.s + start[l]) * row + m * d.dh;
          acc_t* gv_l = gv.data() + start[l] * d.dh;
          for (int64_t p = 0; p < d.p; ++p) {
            const int64_t j = l * d.p + p;
            if (!bilinear_corners(loc_i[2 * j], loc_i[2 * j + 1], height, width, c)) continue;
            const acc_t a = attn_i[j];
            acc_t sum_attn = 0, sum_h = 0, sum_w = 0;
            for (int64_t k = 0; k < c.count; ++k) {
              const scalar_t* v = v_l + c.offset[k] * row;
              acc_t* gvk = gv_l + c.offset[k] * d.dh;
              const acc_t w = a * c.weight[k];
              acc_t dot = 0;  // <grad_output, corner value>
              for (int64_t ch = 0; ch < d.dh; ++ch) {
                dot += g[ch] * static_cast<acc_t>(v[ch]);
                gvk[ch] += w * g[ch];
              }
              sum_attn += c.weight[k] * dot;
              sum_h += c.d_h[k] * dot;
              sum_w += c.d_w[k] * dot;
            }
            gattn_i[j] = sum_attn;
            gloc_i[2 * j] = a * sum_w * width;
            gloc_i[2 * j + 1] = a * sum_h * height;
          }
        }
      }
      scalar_t* out = grad_value + n * d.s * row + m * d.dh;
      for (int64_t s = 0; s < d.s; ++s)
        for (int64_t ch = 0; ch < d.dh; ++ch) out[s * row + ch] = static_cast<scalar_t>(gv[s * d.dh + ch]);
    }
  });
}

}  // namespace

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_loc,
                                      const at::Tensor& attn_weight, int64_t /*im2col_step*/) {
  const Dims d = dims_of(value, sampling_loc);
  auto out = at::empty({d.n, d.lq, d.m * d.dh}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t>(value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                             level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<acc_t>(),
                             attn_weight.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

std::vector<at::Tensor> ms_deform_attn_cpu_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                    const at::Tensor& level_start_index,
                                                    const at::Tensor& sampling_loc, const at::Tensor& attn_weight,
                                                    const at::Tensor& grad_output, int64_t /*im2col_step*/) {
  const Dims d = dims_of(value, sampling_loc);
  auto grad_value = at::empty_like(value);
  auto grad_loc = at::zeros_like(sampling_loc);
  auto grad_attn = at::zeros_like(attn_weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t>(value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                              level_start_index.data_ptr<int64_t>(), sampling_loc.data_ptr<acc_t>(),
                              attn_weight.data_ptr<acc_t>(), grad_output.data_ptr<scalar_t>(),
                              grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<acc_t>(),
                              grad_attn.data_ptr<acc_t>(), d);
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace focus
