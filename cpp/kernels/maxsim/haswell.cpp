// Kernel family 'maxsim', AVX2 + FMA + F16C; see maxsim.hpp. 8 query tokens per ymm lane
// block. Tiles of 12 ymm accumulators: 3 query blocks x 4 document rows, 2 x 6, or 1 x 8
// (+ panel registers and 1 broadcast: <= 16 registers).
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kLanes = 8;

template <int B, int R>
void tile(const float* p, const float* x, std::size_t d, float* best) {
    __m256 accumulator[B][R];
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b)
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) accumulator[b][r] = _mm256_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m256 q_f32x8[B];
        #pragma GCC unroll 16
        for (int b = 0; b < B; ++b) q_f32x8[b] = _mm256_loadu_ps(p + b * d * kLanes + j * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            __m256 x_f32x8 = _mm256_broadcast_ss(x + r * d + j);
            #pragma GCC unroll 16
            for (int b = 0; b < B; ++b)
                accumulator[b][r] = _mm256_fmadd_ps(q_f32x8[b], x_f32x8, accumulator[b][r]);
        }
    }
    #pragma GCC unroll 16
    for (int b = 0; b < B; ++b) {
        __m256 m = _mm256_loadu_ps(best + b * kLanes);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) m = _mm256_max_ps(accumulator[b][r], m);
        _mm256_storeu_ps(best + b * kLanes, m);
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
    for (; b + 3 <= blocks; b += 3)
        blocks_against_rows<3, 4>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
    for (; b + 2 <= blocks; b += 2)
        blocks_against_rows<2, 6>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
    for (; b < blocks; ++b)
        blocks_against_rows<1, 8>(panel + b * d * kLanes, x, n, d, best + b * kLanes);
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

// ---- the MUVERA projection (maxsim.hpp): products rounded, then added, in increasing j ----
// Bitwise the scalar tier's result: the same two roundings per term in the same order, only
// more columns per instruction. fp-contract=off forbids fusing mul + add into an FMA (this
// file is compiled with -mfma). Tiles of 4 tokens x 16 (then 8, 4) columns.
// One register type's operations, so one tile template serves 256- and 128-bit columns.
struct F32x8 {
    using V = __m256;
    static constexpr std::size_t lanes = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
    static V add_product(V a, V x, V w) { return _mm256_add_ps(a, _mm256_mul_ps(x, w)); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
struct F32x4 {
    using V = __m128;
    static constexpr std::size_t lanes = 4;
    static V zero() { return _mm_setzero_ps(); }
    static V load(const float* p) { return _mm_loadu_ps(p); }
    static V broadcast(const float* p) { return _mm_broadcast_ss(p); }
    static V add_product(V a, V x, V w) { return _mm_add_ps(a, _mm_mul_ps(x, w)); }
    static void store(float* p, V v) { _mm_storeu_ps(p, v); }
};

// T tokens x (W registers of R::lanes) columns: 16 (two 256-bit), 8 or 4 columns per tile.
template <std::size_t T, class R, std::size_t W>
__attribute__((optimize("fp-contract=off"))) void project_tile(const float* x, std::size_t d, const float* w,
                                                               std::size_t cols, float* y) {
    typename R::V accumulator[T][W];
#pragma GCC unroll 16
    for (std::size_t u = 0; u < T; ++u)
#pragma GCC unroll 2
        for (std::size_t v = 0; v < W; ++v) accumulator[u][v] = R::zero();
    for (std::size_t j = 0; j < d; ++j) {
        typename R::V column[W];
#pragma GCC unroll 2
        for (std::size_t v = 0; v < W; ++v) column[v] = R::load(w + j * cols + v * R::lanes);
#pragma GCC unroll 16
        for (std::size_t u = 0; u < T; ++u) {
            const typename R::V token = R::broadcast(x + u * d + j);
#pragma GCC unroll 2
            for (std::size_t v = 0; v < W; ++v) accumulator[u][v] = R::add_product(accumulator[u][v], token, column[v]);
        }
    }
#pragma GCC unroll 16
    for (std::size_t u = 0; u < T; ++u)
#pragma GCC unroll 2
        for (std::size_t v = 0; v < W; ++v) R::store(y + u * cols + v * R::lanes, accumulator[u][v]);
}

template <std::size_t T>
__attribute__((optimize("fp-contract=off"))) void project_column(const float* x, std::size_t d, const float* w,
                                                                 std::size_t cols, float* y) {
    float accumulator[T] = {};
    for (std::size_t j = 0; j < d; ++j)
        for (std::size_t u = 0; u < T; ++u) accumulator[u] += x[u * d + j] * w[j * cols];
    for (std::size_t u = 0; u < T; ++u) y[u * cols] = accumulator[u];
}

template <std::size_t T>
void project_rows(const float* x, std::size_t d, const float* w, std::size_t cols, float* y) {
    std::size_t c = 0;
    for (; c + 16 <= cols; c += 16) project_tile<T, F32x8, 2>(x, d, w + c, cols, y + c);
    for (; c + 8 <= cols; c += 8) project_tile<T, F32x8, 1>(x, d, w + c, cols, y + c);
    for (; c + 4 <= cols; c += 4) project_tile<T, F32x4, 1>(x, d, w + c, cols, y + c);
    for (; c < cols; ++c) project_column<T>(x, d, w + c, cols, y + c);
}

void project_f32(const float* x, std::size_t n, std::size_t d, const float* w, std::size_t cols, float* y) {
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) project_rows<4>(x + t * d, d, w, cols, y + t * cols);
    for (; t < n; ++t) project_rows<1>(x + t * d, d, w, cols, y + t * cols);
}

}  // namespace

void register_maxsim_haswell(KernelTable& t) {
    t.maxsim.lanes = kLanes;
    t.maxsim.maxsim_f32 = maxsim_f32;
    t.maxsim.widen_f16 = widen_f16;
    t.maxsim.widen_u8 = widen_u8;
    t.maxsim.project_f32 = project_f32;
}

}  // namespace simdex
