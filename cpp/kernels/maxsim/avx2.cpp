// Kernel family 'maxsim', AVX2 + FMA + F16C; see maxsim.hpp. 8 query tokens per ymm lane
// block. Tile: 2 query blocks x 6 document rows = 12 ymm accumulators (+ 2 panel registers
// and 1 broadcast: 15 of 16); leftover blocks / rows use smaller tiles.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kLanes = 8;

template <int B, int R>
void tile(const float* p, const float* x, std::size_t d, float* best) {
    __m256 accumulator[B][R];
    for (int b = 0; b < B; ++b)
        for (int r = 0; r < R; ++r) accumulator[b][r] = _mm256_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m256 q_f32x8[B];
        for (int b = 0; b < B; ++b) q_f32x8[b] = _mm256_loadu_ps(p + b * d * kLanes + j * kLanes);
        for (int r = 0; r < R; ++r) {
            __m256 x_f32x8 = _mm256_broadcast_ss(x + r * d + j);
            for (int b = 0; b < B; ++b)
                accumulator[b][r] = _mm256_fmadd_ps(q_f32x8[b], x_f32x8, accumulator[b][r]);
        }
    }
    for (int b = 0; b < B; ++b) {
        __m256 m = _mm256_loadu_ps(best + b * kLanes);
        for (int r = 0; r < R; ++r) m = _mm256_max_ps(accumulator[b][r], m);
        _mm256_storeu_ps(best + b * kLanes, m);
    }
}

template <int B>
void blocks_against_rows(const float* p, const float* x, std::size_t n, std::size_t d, float* best) {
    std::size_t r = 0;
    for (; r + 6 <= n; r += 6) tile<B, 6>(p, x + r * d, d, best);
    if (r + 3 <= n) {
        tile<B, 3>(p, x + r * d, d, best);
        r += 3;
    }
    for (; r < n; ++r) tile<B, 1>(p, x + r * d, d, best);
}

void maxsim_f32(const float* panel, std::size_t blocks, const float* x, std::size_t n, std::size_t d,
                float* best) {
    std::size_t b = 0;
    for (; b + 2 <= blocks; b += 2)
        blocks_against_rows<2>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
    if (b < blocks) blocks_against_rows<1>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
}

void widen_f16(const std::uint16_t* x, std::size_t count, float* out) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    if (i < count) {  // tail through a zero-padded copy
        std::uint16_t h[8] = {};
        float f[8];
        for (std::size_t t = 0; t < count - i; ++t) h[t] = x[i + t];
        _mm256_storeu_ps(f, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))));
        for (std::size_t t = 0; t < count - i; ++t) out[i + t] = f[t];
    }
}

void widen_u8(const std::uint8_t* x, std::size_t count, float* out) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)))));
    for (; i < count; ++i) out[i] = static_cast<float>(x[i]);
}

}  // namespace

void register_maxsim_avx2(KernelTable& t) {
    t.maxsim.lanes = kLanes;
    t.maxsim.maxsim_f32 = maxsim_f32;
    t.maxsim.widen_f16 = widen_f16;
    t.maxsim.widen_u8 = widen_u8;
}

}  // namespace simdex
