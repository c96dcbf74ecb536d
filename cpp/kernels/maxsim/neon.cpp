// Kernel family 'maxsim', NEON (AArch64); see maxsim.hpp. 4 query tokens per q-register
// lane block. Tile: 2 query blocks x 8 document rows = 16 accumulators (of 32 registers),
// a last single block 12 rows;
// the document element is taken by lane from a loaded pair of rows' values (vfmaq_n_f32).
#include <arm_neon.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kLanes = 4;

template <int B, int R>
void tile(const float* p, const float* x, std::size_t d, float* best) {
    float32x4_t accumulator[B][R];
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b)
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) accumulator[b][r] = vdupq_n_f32(0.0f);
    for (std::size_t j = 0; j < d; ++j) {
        float32x4_t q_f32x4[B];
        #pragma GCC unroll 16
        for (int b = 0; b < B; ++b) q_f32x4[b] = vld1q_f32(p + b * d * kLanes + j * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            float xv = x[r * d + j];
            #pragma GCC unroll 16
            for (int b = 0; b < B; ++b) accumulator[b][r] = vfmaq_n_f32(accumulator[b][r], q_f32x4[b], xv);
        }
    }
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b) {
        float32x4_t m = vld1q_f32(best + b * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) m = vmaxq_f32(accumulator[b][r], m);
        vst1q_f32(best + b * kLanes, m);
    }
}

// Rows in tiles of R; the last tile overlaps the one before (the maximum does not mind
// seeing a row twice), so a document of n >= R rows never runs a latency-bound small tile.
template <int B, int R>
void blocks_against_rows(const float* p, const float* x, std::size_t n, std::size_t d, float* best) {
    constexpr int kHalf = R / 2;
    if (n < static_cast<std::size_t>(R)) {  // short documents: two overlapping half tiles
        if (n >= static_cast<std::size_t>(kHalf)) {
            tile<B, kHalf>(p, x, d, best);
            tile<B, kHalf>(p, x + (n - kHalf) * d, d, best);
        } else {
            for (std::size_t r = 0; r < n; ++r) tile<B, 1>(p, x + r * d, d, best);
        }
        return;
    }
    std::size_t r = 0;
    for (; r + R <= n; r += R) tile<B, R>(p, x + r * d, d, best);
    if (r < n) tile<B, R>(p, x + (n - R) * d, d, best);
}

void maxsim_f32(const float* panel, std::size_t blocks, const float* x, std::size_t n, std::size_t d,
                float* best) {
    std::size_t b = 0;
    for (; b + 2 <= blocks; b += 2)
        blocks_against_rows<2, 8>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
    for (; b < blocks; ++b)
        blocks_against_rows<1, 12>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
}

void widen_f16(const std::uint16_t* x, std::size_t count, float* out) {
    std::size_t i = 0;
    for (; i + 4 <= count; i += 4)
        vst1q_f32(out + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < count; ++i) {
        std::uint16_t h[4] = {x[i], 0, 0, 0};
        out[i] = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))), 0);
    }
}

void widen_u8(const std::uint8_t* x, std::size_t count, float* out) {
    for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(x[i]);
}

}  // namespace

void register_maxsim_neon(KernelTable& t) {
    t.maxsim.lanes = kLanes;
    t.maxsim.maxsim_f32 = maxsim_f32;
    t.maxsim.widen_f16 = widen_f16;
    t.maxsim.widen_u8 = widen_u8;
}

}  // namespace simdex
