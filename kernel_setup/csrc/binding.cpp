// Python binding of the DejaVid CUDA kernels: checks every tensor's device, dtype,
// shape and contiguity with a message that says what to fix, then launches the
// kernels of kernels.cu on the current stream of x's device.  Outputs are
// allocated by the caller (dejavid/alignment/cuda.py).
//
// Only CPU-side torch headers are included (no ATen/cuda), so this file also
// compiles against a CPU-only torch (tests/test_kernel_build.py checks that).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/csrc/utils/pybind.h>

#include <climits>
#include <optional>
#include <vector>

#include "kernels.h"

namespace {

void check_tensor(const at::Tensor& t, const char* name, const at::Device& device,
                  at::ScalarType dtype, const std::vector<int64_t>& shape) {
  TORCH_CHECK(t.is_cuda(), "dejavid CUDA kernels: ", name, " must be a CUDA tensor, got one on ",
              t.device());
  TORCH_CHECK(t.device() == device, "dejavid CUDA kernels: ", name, " must be on ", device,
              " like x, got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "dejavid CUDA kernels: ", name, " must be ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), "dejavid CUDA kernels: ", name,
              " must have shape ", at::IntArrayRef(shape), ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "dejavid CUDA kernels: ", name,
              " must be contiguous (call .contiguous() first)");
}

// The tensor the others are checked against: a float32 or float64 CUDA tensor
// (x [N, F], or the local cost [C, K, ncols]).
void check_lead(const at::Tensor& x, const char* name, int64_t dim, const char* layout) {
  TORCH_CHECK(x.is_cuda(), "dejavid CUDA kernels: ", name, " must be a CUDA tensor, got one on ",
              x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "dejavid CUDA kernels support float32 and float64, got ", name, " of ",
              x.scalar_type());
  TORCH_CHECK(x.dim() == dim, "dejavid CUDA kernels: ", name, " must be ", layout,
              ", got shape ", x.sizes());
  TORCH_CHECK(x.size(0) >= 1 && x.size(dim - 1) >= 1 && x.size(dim == 2 ? 0 : 2) <= INT_MAX,
              "dejavid CUDA kernels: ", name, " has an unsupported shape ", x.sizes());
  TORCH_CHECK(x.is_contiguous(), "dejavid CUDA kernels: ", name,
              " must be contiguous (call .contiguous() first)");
}

void check_x(const at::Tensor& x) { check_lead(x, "x", 2, "[N, F]"); }

// mu and w [C, K, F] like x; returns {C, K}.
std::vector<int64_t> check_centroids(const at::Tensor& x, const at::Tensor& mu,
                                     const at::Tensor& w) {
  TORCH_CHECK(mu.dim() == 3, "dejavid CUDA kernels: mu must be [C, K, F], got shape ",
              mu.sizes());
  const int64_t C = mu.size(0), K = mu.size(1), F = x.size(1);
  TORCH_CHECK(C >= 1 && K >= 1, "dejavid CUDA kernels: mu must have C >= 1 and K >= 1, got ",
              mu.sizes());
  TORCH_CHECK(C * K <= djv::kMaxCostRows, "dejavid CUDA kernels: C * K = ", C * K,
              " exceeds the supported ", djv::kMaxCostRows);
  check_tensor(mu, "mu", x.device(), x.scalar_type(), {C, K, F});
  check_tensor(w, "w", x.device(), x.scalar_type(), {C, K, F});
  return {C, K};
}

// offsets [B + 1] int64 on x's device; returns B.  Its values (0 = offsets[0] <
// ... < offsets[B] = N) are checked by dejavid.alignment.op.check_inputs: reading them
// here would synchronise with the device.
int64_t check_offsets(const at::Tensor& x, const at::Tensor& offsets) {
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 2,
              "dejavid CUDA kernels: offsets must be [B + 1] with B >= 1, got shape ",
              offsets.sizes());
  check_tensor(offsets, "offsets", x.device(), at::kLong, {offsets.size(0)});
  return offsets.size(0) - 1;
}

void* current_stream(const at::Tensor& x) {
  return c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getStream(x.device()).native_handle();
}

void check_launch(int err, const char* what) {
  TORCH_CHECK(err == 0, "dejavid CUDA kernel ", what, " failed: ", djv::error_string(err));
}

template <typename T>
const T* cptr(const at::Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}

template <typename T>
T* mptr(const at::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// out [C, K, ncols] = local cost of x [ncols, F] against every centroid row.
void local_cost(const at::Tensor& x, const at::Tensor& mu, const at::Tensor& w,
                const at::Tensor& out) {
  check_x(x);
  const auto ck = check_centroids(x, mu, w);
  const int64_t ncols = x.size(0), F = x.size(1);
  check_tensor(out, "out", x.device(), x.scalar_type(), {ck[0], ck[1], ncols});
  const c10::DeviceGuard guard(x.device());
  int err = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dejavid_local_cost", [&] {
    err = djv::launch_local_cost<scalar_t>(cptr<scalar_t>(x), ncols, cptr<scalar_t>(mu),
                                           cptr<scalar_t>(w), ck[0] * ck[1], F,
                                           mptr<scalar_t>(out), ncols, current_stream(x));
  });
  check_launch(err, "local_cost");
}

// Accumulated cost and backtracking, in place over cost [C, K, ncols] = the local
// cost of samples b0 .. b0 + nb - 1 (column 0 = first step of sample b0).
void dtw(const at::Tensor& cost, const at::Tensor& offsets, int64_t b0, int64_t nb, bool hvd,
         const at::Tensor& dist, const at::Tensor& paths) {
  check_lead(cost, "cost", 3, "[C, K, ncols]");
  const int64_t C = cost.size(0), K = cost.size(1), ncols = cost.size(2);
  const int64_t B = check_offsets(cost, offsets);
  TORCH_CHECK(b0 >= 0 && nb >= 1 && b0 + nb <= B, "dejavid CUDA kernels: samples ", b0, " .. ",
              b0 + nb - 1, " are not within the batch of ", B);
  check_tensor(dist, "dist", cost.device(), cost.scalar_type(), {B, C});
  check_tensor(paths, "paths", cost.device(), at::kInt, {B, C, K, 2});
  const c10::DeviceGuard guard(cost.device());
  int err = 0;
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "dejavid_dtw", [&] {
    err = djv::launch_dtw<scalar_t>(mptr<scalar_t>(cost), ncols, cptr<int64_t>(offsets), b0, nb,
                                    C, K, hvd, mptr<scalar_t>(dist), mptr<int32_t>(paths),
                                    current_stream(cost));
  });
  check_launch(err, "dtw");
}

// dist [B, C] along paths; partial [B, C, K] is scratch.
void path_cost(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& mu,
               const at::Tensor& w, const at::Tensor& paths, const at::Tensor& partial,
               const at::Tensor& dist) {
  check_x(x);
  const auto ck = check_centroids(x, mu, w);
  const int64_t C = ck[0], K = ck[1], F = x.size(1);
  const int64_t B = check_offsets(x, offsets);
  check_tensor(paths, "paths", x.device(), at::kInt, {B, C, K, 2});
  check_tensor(partial, "partial", x.device(), x.scalar_type(), {B, C, K});
  check_tensor(dist, "dist", x.device(), x.scalar_type(), {B, C});
  const c10::DeviceGuard guard(x.device());
  int err = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dejavid_path_cost", [&] {
    err = djv::launch_path_cost<scalar_t>(cptr<scalar_t>(x), cptr<int64_t>(offsets), B,
                                          cptr<scalar_t>(mu), cptr<scalar_t>(w),
                                          cptr<int32_t>(paths), C, K, F,
                                          mptr<scalar_t>(partial), mptr<scalar_t>(dist),
                                          current_stream(x));
  });
  check_launch(err, "path_cost");
}

// gmu, gtheta [C, K, F] and optionally gx [N, F] for upstream grad [B, C].
void path_grads(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& mu,
                const at::Tensor& w, const at::Tensor& paths, const at::Tensor& grad,
                const at::Tensor& gmu, const at::Tensor& gtheta,
                const std::optional<at::Tensor>& gx) {
  check_x(x);
  const auto ck = check_centroids(x, mu, w);
  const int64_t C = ck[0], K = ck[1], N = x.size(0), F = x.size(1);
  const int64_t B = check_offsets(x, offsets);
  check_tensor(paths, "paths", x.device(), at::kInt, {B, C, K, 2});
  check_tensor(grad, "grad", x.device(), x.scalar_type(), {B, C});
  check_tensor(gmu, "grad_mu", x.device(), x.scalar_type(), {C, K, F});
  check_tensor(gtheta, "grad_theta", x.device(), x.scalar_type(), {C, K, F});
  if (gx.has_value()) check_tensor(*gx, "grad_x", x.device(), x.scalar_type(), {N, F});
  const c10::DeviceGuard guard(x.device());
  int err = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dejavid_path_grads", [&] {
    err = djv::launch_path_grads<scalar_t>(
        cptr<scalar_t>(x), cptr<int64_t>(offsets), N, B, cptr<scalar_t>(mu), cptr<scalar_t>(w),
        cptr<int32_t>(paths), cptr<scalar_t>(grad), C, K, F, mptr<scalar_t>(gmu),
        mptr<scalar_t>(gtheta), gx.has_value() ? mptr<scalar_t>(*gx) : nullptr,
        current_stream(x));
  });
  check_launch(err, "path_grads");
}

// DBA sums [K, F] and counts [K] of one centroid's paths [B, 1, K, 2].
void dba(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& paths,
         const at::Tensor& sums, const at::Tensor& counts) {
  check_x(x);
  const int64_t B = check_offsets(x, offsets), F = x.size(1);
  TORCH_CHECK(paths.dim() == 4 && paths.size(2) >= 1,
              "dejavid CUDA kernels: paths must be [B, 1, K, 2], got shape ", paths.sizes());
  const int64_t K = paths.size(2);
  check_tensor(paths, "paths", x.device(), at::kInt, {B, 1, K, 2});
  check_tensor(sums, "sums", x.device(), x.scalar_type(), {K, F});
  check_tensor(counts, "counts", x.device(), x.scalar_type(), {K});
  const c10::DeviceGuard guard(x.device());
  int err = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dejavid_dba", [&] {
    err = djv::launch_dba<scalar_t>(cptr<scalar_t>(x), cptr<int64_t>(offsets), B,
                                    cptr<int32_t>(paths), K, F, mptr<scalar_t>(sums),
                                    mptr<scalar_t>(counts), current_stream(x));
  });
  check_launch(err, "dba");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "DejaVid CUDA kernels (see dejavid/alignment/cuda.py for the Python op)";
  namespace py = pybind11;
  m.def("local_cost", &local_cost, py::arg("x"), py::arg("mu"), py::arg("w"), py::arg("out"));
  m.def("dtw", &dtw, py::arg("cost"), py::arg("offsets"), py::arg("b0"), py::arg("nb"),
        py::arg("hvd"), py::arg("dist"), py::arg("paths"));
  m.def("path_cost", &path_cost, py::arg("x"), py::arg("offsets"), py::arg("mu"), py::arg("w"),
        py::arg("paths"), py::arg("partial"), py::arg("dist"));
  m.def("path_grads", &path_grads, py::arg("x"), py::arg("offsets"), py::arg("mu"),
        py::arg("w"), py::arg("paths"), py::arg("grad"), py::arg("grad_mu"),
        py::arg("grad_theta"), py::arg("grad_x"));
  m.def("dba", &dba, py::arg("x"), py::arg("offsets"), py::arg("paths"), py::arg("sums"),
        py::arg("counts"));
}
