// Kernel family 'binary', NEON (AArch64); see binary.hpp for the math.
// Symmetric: 16-byte chunks, XOR + VCNT (per-byte popcount), pairwise-widened into 32-bit
//   lanes (no overflow for any plane size below 2^28 bytes), bytes for the tail.
// Asymmetric: each byte of a plane becomes two 4-lane masks (VTST against 1<<i), the query
//   (in bit order) is ANDed under them and accumulated; weights applied once per plane.
#include <arm_neon.h>

#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/hamming/popcount_neon.inc"

#include "kernels/binary/planes_xor_rows.inc"

// 4 partial sums of q_bits over the set bits of one plane
float32x4_t masked_sum(const float* q_bits, const std::uint8_t* plane, std::size_t plane_bytes) {
    const std::uint32_t low_bits[4] = {1, 2, 4, 8};
    const std::uint32_t high_bits[4] = {16, 32, 64, 128};
    const uint32x4_t low_u32x4 = vld1q_u32(low_bits), high_u32x4 = vld1q_u32(high_bits);
    float32x4_t sum0 = vdupq_n_f32(0.0f), sum1 = vdupq_n_f32(0.0f);
    for (std::size_t g = 0; g < plane_bytes; ++g) {
        uint32x4_t byte_u32x4 = vdupq_n_u32(plane[g]);
        uint32x4_t mask_lo = vtstq_u32(byte_u32x4, low_u32x4);
        uint32x4_t mask_hi = vtstq_u32(byte_u32x4, high_u32x4);
        uint32x4_t q_lo = vreinterpretq_u32_f32(vld1q_f32(q_bits + 8 * g));
        uint32x4_t q_hi = vreinterpretq_u32_f32(vld1q_f32(q_bits + 8 * g + 4));
        sum0 = vaddq_f32(sum0, vreinterpretq_f32_u32(vandq_u32(mask_lo, q_lo)));
        sum1 = vaddq_f32(sum1, vreinterpretq_f32_u32(vandq_u32(mask_hi, q_hi)));
    }
    return vaddq_f32(sum0, sum1);
}

void planes_float_rows(const float* q_bits, const std::uint8_t* rows, std::size_t n,
                       std::size_t bits, std::size_t plane_bytes, const float* weights,
                       float offset, float* out) {
    std::size_t row_bytes = bits * plane_bytes;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* row = rows + i * row_bytes;
        float32x4_t sum_f32x4 = vdupq_n_f32(0.0f);
        for (std::size_t t = 0; t < bits; ++t)
            sum_f32x4 = vfmaq_n_f32(sum_f32x4, masked_sum(q_bits, row + t * plane_bytes, plane_bytes),
                                    weights[t]);
        out[i] = offset + vaddvq_f32(sum_f32x4);
    }
}

}  // namespace

void register_binary_neon(KernelTable& t) {
    t.binary.planes_xor_rows = planes_xor_rows;
    t.binary.planes_xor_tile = planes_xor_tile_by_rows;
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
