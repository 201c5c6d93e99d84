// Selective scan forward on CPU: one fused pass per (batch, channel) over the sequence, the N states in a
// vectorisable inner loop. Same function as focus.layers.selective_scan.selective_scan_reference.
#include <torch/extension.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

template <typename scalar_t>
void scan_kernel(const scalar_t* u, const scalar_t* delta, const scalar_t* A, const scalar_t* B, const scalar_t* C,
                 const scalar_t* D, const scalar_t* bias, scalar_t* y, int64_t batch, int64_t dim, int64_t len,
                 int64_t groups, int64_t nstate) {
  const int64_t per_group = dim / groups;
  at::parallel_for(0, batch * dim, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> h(nstate);
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / dim, c = bc % dim, g = c / per_group;
      const scalar_t* a_c = A + c * nstate;
      const scalar_t* b_g = B + (b * groups + g) * len * nstate;  // (l, n) layout
      const scalar_t* c_g = C + (b * groups + g) * len * nstate;
      const scalar_t bias_c = bias ? bias[c] : scalar_t(0);
      const scalar_t d_c = D ? D[c] : scalar_t(0);
      const scalar_t* u_bc = u + bc * len;
      const scalar_t* dl_bc = delta + bc * len;
      scalar_t* y_bc = y + bc * len;
      std::fill(h.begin(), h.end(), scalar_t(0));
      scalar_t* hp = h.data();
      for (int64_t l = 0; l < len; ++l) {
        const scalar_t x = dl_bc[l] + bias_c;
        const scalar_t dt = x > scalar_t(20) ? x : std::log1p(std::exp(x));  // softplus, threshold 20
        const scalar_t du = dt * u_bc[l];
        const scalar_t* bl = b_g + l * nstate;
        const scalar_t* cl = c_g + l * nstate;
        scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < nstate; ++k) {
          const scalar_t hk = std::exp(dt * a_c[k]) * hp[k] + du * bl[k];
          hp[k] = hk;
          acc += cl[k] * hk;
        }
        y_bc[l] = acc + d_c * u_bc[l];
      }
    }
  });
}

}  // namespace

// u, delta (b, d, l); A (d, n); B, C (b, G, n, l); D, delta_bias (d,) or empty -> y (b, d, l)
torch::Tensor selective_scan_fwd(torch::Tensor u, torch::Tensor delta, torch::Tensor A, torch::Tensor B,
                                 torch::Tensor C, torch::Tensor D, torch::Tensor delta_bias) {
  TORCH_CHECK(u.device().is_cpu(), "selective_scan_fwd: CPU tensors only");
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes(), "selective_scan_fwd: u and delta must be (b, d, l)");
  TORCH_CHECK(B.dim() == 4 && B.sizes() == C.sizes(), "selective_scan_fwd: B and C must be (b, G, n, l)");
  const int64_t batch = u.size(0), dim = u.size(1), len = u.size(2), groups = B.size(1), nstate = A.size(1);
  TORCH_CHECK(dim % groups == 0, "selective_scan_fwd: channels not divisible by the groups of B/C");
  TORCH_CHECK(A.size(0) == dim && B.size(0) == batch && B.size(2) == nstate && B.size(3) == len,
              "selective_scan_fwd: inconsistent shapes");
  auto opts = u.options();
  u = u.contiguous();
  delta = delta.to(opts).contiguous();
  A = A.to(opts).contiguous();
  auto Bt = B.to(opts).transpose(2, 3).contiguous();
  auto Ct = C.to(opts).transpose(2, 3).contiguous();
  const bool has_d = D.numel() > 0, has_bias = delta_bias.numel() > 0;
  if (has_d) D = D.to(opts).contiguous();
  if (has_bias) delta_bias = delta_bias.to(opts).contiguous();
  auto y = torch::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_fwd", [&] {
    scan_kernel<scalar_t>(u.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                          Bt.data_ptr<scalar_t>(), Ct.data_ptr<scalar_t>(), has_d ? D.data_ptr<scalar_t>() : nullptr,
                          has_bias ? delta_bias.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(), batch, dim,
                          len, groups, nstate);
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("selective_scan_fwd", &selective_scan_fwd, "selective scan forward (CPU)");
}
