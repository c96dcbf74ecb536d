// GEMM-style inner products for many queries, portable reference: one dot per pair.
// ISA files replace this with register-blocked micro-kernels. It reads the rows as they are:
// nothing to pack, so the table's gemm_pack_rows / ip_tile_f32_packed stay nullptr.
#include "kernels/kernels.hpp"

namespace simdex {
namespace {

void ip_tile_f32(const float* queries, std::size_t nq, const float* x, std::size_t n,
                 std::size_t d, float* out, std::size_t out_stride, float* scratch) {
    for (std::size_t i = 0; i < nq; ++i) {
        const float* q = queries + i * d;
        for (std::size_t j = 0; j < n; ++j) {
            const float* row = x + j * d;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            std::size_t t = 0;
            for (; t + 4 <= d; t += 4) {
                s0 += q[t] * row[t];
                s1 += q[t + 1] * row[t + 1];
                s2 += q[t + 2] * row[t + 2];
                s3 += q[t + 3] * row[t + 3];
            }
            for (; t < d; ++t) s0 += q[t] * row[t];
            out[i * out_stride + j] = (s0 + s1) + (s2 + s3);
        }
    }
}

std::size_t scratch_floats(std::size_t, std::size_t, std::size_t) { return 0; }

}  // namespace

void register_gemm_scalar(KernelTable& t) {
    t.ip_tile_f32 = ip_tile_f32;
    t.gemm_scratch_floats = scratch_floats;
    t.gemm_tile_q = 16;
    t.gemm_tile_n = 256;
}

}  // namespace simdex
