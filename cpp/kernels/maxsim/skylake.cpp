// Kernel family 'maxsim', AVX-512F; see maxsim.hpp. 16 query tokens per zmm lane block.
// Tile: 2 query blocks (32 tokens) x 8 document rows = 16 zmm accumulators; per dimension
// 2 panel loads and 8 broadcasts feed 16 FMAs; a last single block takes 12 rows.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kLanes = 16;

// B query blocks (panel p, block stride d * 16) against R rows starting at x; running
// maxima best[0 .. B * 16).
template <int B, int R>
void tile(const float* p, const float* x, std::size_t d, float* best) {
    __m512 accumulator[B][R];
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b)
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) accumulator[b][r] = _mm512_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m512 q_f32x16[B];
        #pragma GCC unroll 16
        for (int b = 0; b < B; ++b) q_f32x16[b] = _mm512_loadu_ps(p + b * d * kLanes + j * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            __m512 x_f32x16 = _mm512_set1_ps(x[r * d + j]);
            #pragma GCC unroll 16
            for (int b = 0; b < B; ++b)
                accumulator[b][r] = _mm512_fmadd_ps(q_f32x16[b], x_f32x16, accumulator[b][r]);
        }
    }
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b) {
        __m512 m = _mm512_loadu_ps(best + b * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) m = _mm512_max_ps(accumulator[b][r], m);
        _mm512_storeu_ps(best + b * kLanes, m);
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
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
    if (i < count) {
        __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1u);
        __m256i h = _mm256_maskz_loadu_epi16(tail, x + i);
        _mm512_mask_storeu_ps(out + i, tail, _mm512_cvtph_ps(h));
    }
}

void widen_u8(const std::uint8_t* x, std::size_t count, float* out) {
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)))));
    if (i < count) {
        __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1u);
        __m128i codes = _mm_maskz_loadu_epi8(tail, x + i);
        _mm512_mask_storeu_ps(out + i, tail, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(codes)));
    }
}

}  // namespace

void register_maxsim_skylake(KernelTable& t) {
    t.maxsim.lanes = kLanes;
    t.maxsim.maxsim_f32 = maxsim_f32;
    t.maxsim.widen_f16 = widen_f16;
    t.maxsim.widen_u8 = widen_u8;
}

}  // namespace simdex
