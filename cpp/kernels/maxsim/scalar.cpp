// Kernel family 'maxsim', portable C++ (the fallback every other ISA inherits from); see
// maxsim.hpp. 4 lanes x 4 document rows of accumulators: the compiler keeps them in SSE /
// NEON registers (the lanes are independent sums, so no re-association is needed).
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kLanes = 4;
constexpr std::size_t kRows = 4;

void maxsim_f32(const float* panel, std::size_t blocks, const float* x, std::size_t n, std::size_t d,
                float* best) {
    for (std::size_t b = 0; b < blocks; ++b) {
        const float* p = panel + b * d * kLanes;
        float* out = best + b * kLanes;
        std::size_t r = 0;
        for (; r + kRows <= n; r += kRows) {
            float accumulator[kRows][kLanes] = {};
            const float* rows = x + r * d;
            for (std::size_t j = 0; j < d; ++j) {
                const float* q = p + j * kLanes;
                #pragma GCC unroll 16
                for (std::size_t u = 0; u < kRows; ++u) {
                    float xv = rows[u * d + j];
                    #pragma GCC unroll 16
                    for (std::size_t l = 0; l < kLanes; ++l) accumulator[u][l] += q[l] * xv;
                }
            }
            #pragma GCC unroll 16
            for (std::size_t u = 0; u < kRows; ++u)
                #pragma GCC unroll 16
                for (std::size_t l = 0; l < kLanes; ++l)
                    out[l] = accumulator[u][l] > out[l] ? accumulator[u][l] : out[l];
        }
        for (; r < n; ++r) {
            float accumulator[kLanes] = {};
            const float* row = x + r * d;
            for (std::size_t j = 0; j < d; ++j)
                #pragma GCC unroll 16
                for (std::size_t l = 0; l < kLanes; ++l) accumulator[l] += p[j * kLanes + l] * row[j];
            #pragma GCC unroll 16
            for (std::size_t l = 0; l < kLanes; ++l) out[l] = accumulator[l] > out[l] ? accumulator[l] : out[l];
        }
    }
}

float f16_to_f32(std::uint16_t h) {
    std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
        float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
        std::memcpy(&bits, &magnitude, 4);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

void widen_f16(const std::uint16_t* x, std::size_t count, float* out) {
    for (std::size_t i = 0; i < count; ++i) out[i] = f16_to_f32(x[i]);
}

void widen_u8(const std::uint8_t* x, std::size_t count, float* out) {
    for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(x[i]);
}

// ---- the MUVERA projection (maxsim.hpp): products rounded, then added, in increasing j ----
// Tiles of T tokens x 4V columns in 4-lane vectors (GCC vector extensions: SSE on x86-64,
// NEON on AArch64); leftover columns one at a time in the same order. fp-contract=off keeps
// the compiler from fusing the multiply-add where the baseline ISA has FMA (AArch64).
typedef float F32x4 __attribute__((vector_size(16)));

template <std::size_t T, std::size_t V>
__attribute__((optimize("fp-contract=off"))) void project_tile(const float* x, std::size_t d, const float* w,
                                                               std::size_t cols, float* y) {
    F32x4 accumulator[T][V] = {};
    for (std::size_t j = 0; j < d; ++j) {
        F32x4 w_f32x4[V];
#pragma GCC unroll 16
        for (std::size_t v = 0; v < V; ++v) std::memcpy(&w_f32x4[v], w + j * cols + 4 * v, sizeof(F32x4));
#pragma GCC unroll 16
        for (std::size_t u = 0; u < T; ++u) {
            const float s = x[u * d + j];
            const F32x4 x_f32x4 = {s, s, s, s};
#pragma GCC unroll 16
            for (std::size_t v = 0; v < V; ++v) accumulator[u][v] += x_f32x4 * w_f32x4[v];
        }
    }
#pragma GCC unroll 16
    for (std::size_t u = 0; u < T; ++u) std::memcpy(y + u * cols, accumulator[u], sizeof(accumulator[u]));
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
    for (; c + 8 <= cols; c += 8) project_tile<T, 2>(x, d, w + c, cols, y + c);
    for (; c + 4 <= cols; c += 4) project_tile<T, 1>(x, d, w + c, cols, y + c);
    for (; c < cols; ++c) project_column<T>(x, d, w + c, cols, y + c);
}

void project_f32(const float* x, std::size_t n, std::size_t d, const float* w, std::size_t cols, float* y) {
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) project_rows<4>(x + t * d, d, w, cols, y + t * cols);
    for (; t < n; ++t) project_rows<1>(x + t * d, d, w, cols, y + t * cols);
}

}  // namespace

void register_maxsim_scalar(KernelTable& t) {
    t.maxsim.lanes = kLanes;
    t.maxsim.maxsim_f32 = maxsim_f32;
    t.maxsim.widen_f16 = widen_f16;
    t.maxsim.widen_u8 = widen_u8;
    t.maxsim.project_f32 = project_f32;
}

}  // namespace simdex
