// Dense kernels, portable C++ (the fallback every other ISA inherits from).
// Four independent float32 accumulators per row: the compiler may keep them in SSE lanes
// without re-associating (no -ffast-math), and the error stays ~ d/4 * eps * |terms|.
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

float f16_to_f32(std::uint16_t h) {
    std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {
        float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;  // 2^-24
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

float bf16_to_f32(std::uint16_t h) {
    std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

struct F32 {
    using T = float;
    static float get(const float* x, std::size_t j) { return x[j]; }
};
struct F16 {
    using T = std::uint16_t;
    static float get(const std::uint16_t* x, std::size_t j) { return f16_to_f32(x[j]); }
};
struct BF16 {
    using T = std::uint16_t;
    static float get(const std::uint16_t* x, std::size_t j) { return bf16_to_f32(x[j]); }
};
struct U8 {
    using T = std::uint8_t;
    static float get(const std::uint8_t* x, std::size_t j) { return static_cast<float>(x[j]); }
};

template <class L>
float dot(const float* q, const typename L::T* x, std::size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t j = 0;
    for (; j + 4 <= d; j += 4) {
        s0 += q[j] * L::get(x, j);
        s1 += q[j + 1] * L::get(x, j + 1);
        s2 += q[j + 2] * L::get(x, j + 2);
        s3 += q[j + 3] * L::get(x, j + 3);
    }
    for (; j < d; ++j) s0 += q[j] * L::get(x, j);
    return (s0 + s1) + (s2 + s3);
}

template <class L>
float l2(const float* q, const typename L::T* x, std::size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t j = 0;
    for (; j + 4 <= d; j += 4) {
        float a = q[j] - L::get(x, j), b = q[j + 1] - L::get(x, j + 1);
        float c = q[j + 2] - L::get(x, j + 2), e = q[j + 3] - L::get(x, j + 3);
        s0 += a * a;
        s1 += b * b;
        s2 += c * c;
        s3 += e * e;
    }
    for (; j < d; ++j) {
        float a = q[j] - L::get(x, j);
        s0 += a * a;
    }
    return (s0 + s1) + (s2 + s3);
}

float l2_u8(const float* q, const float* scale, const std::uint8_t* x, std::size_t d) {
    float s0 = 0, s1 = 0;
    std::size_t j = 0;
    for (; j + 2 <= d; j += 2) {
        float a = q[j] - scale[j] * static_cast<float>(x[j]);
        float b = q[j + 1] - scale[j + 1] * static_cast<float>(x[j + 1]);
        s0 += a * a;
        s1 += b * b;
    }
    for (; j < d; ++j) {
        float a = q[j] - scale[j] * static_cast<float>(x[j]);
        s0 += a * a;
    }
    return s0 + s1;
}

template <class L>
void dot_rows(const float* q, const typename L::T* x, std::size_t n, std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = dot<L>(q, x + i * d, d);
}

template <class L>
void l2_rows(const float* q, const typename L::T* x, std::size_t n, std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = l2<L>(q, x + i * d, d);
}

void l2_u8_rows(const float* q, const float* scale, const std::uint8_t* x, std::size_t n,
                std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = l2_u8(q, scale, x + i * d, d);
}

std::int32_t dot_s8u8(const std::int8_t* q, const std::uint8_t* x, std::size_t d) {
    std::int32_t sum = 0;
    for (std::size_t j = 0; j < d; ++j) sum += static_cast<std::int32_t>(q[j]) * x[j];
    return sum;
}

// Four accumulators each for <q, x> and <x, x>, as the single kernels.
void dot_norm_rows(const float* q, const float* x, std::size_t n, std::size_t d, float* dots,
                   float* norms) {
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = x + i * d;
        float dot[4] = {0, 0, 0, 0}, norm[4] = {0, 0, 0, 0};
        std::size_t j = 0;
        for (; j + 4 <= d; j += 4)
            for (int u = 0; u < 4; ++u) {
                dot[u] += q[j + u] * row[j + u];
                norm[u] += row[j + u] * row[j + u];
            }
        for (; j < d; ++j) {
            dot[0] += q[j] * row[j];
            norm[0] += row[j] * row[j];
        }
        dots[i] = (dot[0] + dot[1]) + (dot[2] + dot[3]);
        norms[i] = (norm[0] + norm[1]) + (norm[2] + norm[3]);
    }
}

}  // namespace

void register_dense_scalar(KernelTable& t) {
    t.dot_norm_f32_rows = dot_norm_rows;
    t.dot_s8u8 = dot_s8u8;
    t.dot_f32 = dot<F32>;
    t.l2_f32 = l2<F32>;
    t.dot_f16 = dot<F16>;
    t.l2_f16 = l2<F16>;
    t.dot_bf16 = dot<BF16>;
    t.l2_bf16 = l2<BF16>;
    t.dot_u8 = dot<U8>;
    t.l2_u8 = l2_u8;
    t.dot_f32_rows = dot_rows<F32>;
    t.l2_f32_rows = l2_rows<F32>;
    t.dot_f16_rows = dot_rows<F16>;
    t.l2_f16_rows = l2_rows<F16>;
    t.dot_bf16_rows = dot_rows<BF16>;
    t.l2_bf16_rows = l2_rows<BF16>;
    t.dot_u8_rows = dot_rows<U8>;
    t.l2_u8_rows = l2_u8_rows;
}

}  // namespace simdex
