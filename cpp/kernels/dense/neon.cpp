// Dense kernels, aarch64 NEON: 4 float32 lanes, two accumulators (8 elements per step),
// scalar loop for the last d % 8 elements. float16 is widened with vcvt_f32_f16,
// bfloat16 by a 16-bit left shift, uint8 through vmovl.
#include <arm_neon.h>

#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

struct Pair {
    float32x4_t lo, hi;
};

struct F32 {
    using T = float;
    static Pair load(const float* x) { return {vld1q_f32(x), vld1q_f32(x + 4)}; }
    static float get(const float* x, std::size_t j) { return x[j]; }
};
struct F16 {
    using T = std::uint16_t;
    static Pair load(const std::uint16_t* x) {
        uint16x8_t h = vld1q_u16(x);
        return {vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))),
                vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)))};
    }
    static float get(const std::uint16_t* x, std::size_t j) {
        __fp16 h;
        std::memcpy(&h, x + j, 2);
        return static_cast<float>(h);
    }
};
struct BF16 {
    using T = std::uint16_t;
    static Pair load(const std::uint16_t* x) {
        uint16x8_t h = vld1q_u16(x);
        return {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)),
                vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16))};
    }
    static float get(const std::uint16_t* x, std::size_t j) {
        std::uint32_t bits = static_cast<std::uint32_t>(x[j]) << 16;
        float out;
        std::memcpy(&out, &bits, 4);
        return out;
    }
};
struct U8 {
    using T = std::uint8_t;
    static Pair load(const std::uint8_t* x) {
        uint16x8_t wide = vmovl_u8(vld1_u8(x));
        return {vcvtq_f32_u32(vmovl_u16(vget_low_u16(wide))),
                vcvtq_f32_u32(vmovl_u16(vget_high_u16(wide)))};
    }
    static float get(const std::uint8_t* x, std::size_t j) { return static_cast<float>(x[j]); }
};

struct DotStep {
    static float32x4_t step(float32x4_t q, float32x4_t x, float32x4_t s, const float*, std::size_t) {
        return vfmaq_f32(s, q, x);
    }
    static float scalar(float q, float x, const float*, std::size_t) { return q * x; }
};
struct L2Step {
    static float32x4_t step(float32x4_t q, float32x4_t x, float32x4_t s, const float*, std::size_t) {
        float32x4_t diff = vsubq_f32(q, x);
        return vfmaq_f32(s, diff, diff);
    }
    static float scalar(float q, float x, const float*, std::size_t) { return (q - x) * (q - x); }
};
struct L2ScaledStep {
    static float32x4_t step(float32x4_t q, float32x4_t x, float32x4_t s, const float* scale,
                            std::size_t j) {
        float32x4_t diff = vfmsq_f32(q, vld1q_f32(scale + j), x);
        return vfmaq_f32(s, diff, diff);
    }
    static float scalar(float q, float x, const float* scale, std::size_t j) {
        float diff = q - scale[j] * x;
        return diff * diff;
    }
};

template <class L, class S>
float one(const float* q, const float* scale, const typename L::T* x, std::size_t d) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
    std::size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        Pair v = L::load(x + j);
        s0 = S::step(vld1q_f32(q + j), v.lo, s0, scale, j);
        s1 = S::step(vld1q_f32(q + j + 4), v.hi, s1, scale, j + 4);
    }
    float tail = 0;
    for (; j < d; ++j) tail += S::scalar(q[j], L::get(x, j), scale, j);
    return vaddvq_f32(vaddq_f32(s0, s1)) + tail;
}

template <class L, class S>
float pair(const float* q, const typename L::T* x, std::size_t d) {
    return one<L, S>(q, nullptr, x, d);
}

template <class L, class S>
void pair_rows(const float* q, const typename L::T* x, std::size_t n, std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = one<L, S>(q, nullptr, x + i * d, d);
}

void l2_u8_rows(const float* q, const float* scale, const std::uint8_t* x, std::size_t n,
                std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = one<U8, L2ScaledStep>(q, scale, x + i * d, d);
}

// <q, x> and <x, x> from one load of each row vector: two accumulators each.
void dot_norm_rows(const float* q, const float* x, std::size_t n, std::size_t d, float* dots,
                   float* norms) {
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = x + i * d;
        float32x4_t dot0 = vdupq_n_f32(0), dot1 = vdupq_n_f32(0);
        float32x4_t norm0 = vdupq_n_f32(0), norm1 = vdupq_n_f32(0);
        std::size_t j = 0;
        for (; j + 8 <= d; j += 8) {
            const float32x4_t x0 = vld1q_f32(row + j), x1 = vld1q_f32(row + j + 4);
            dot0 = vfmaq_f32(dot0, vld1q_f32(q + j), x0);
            dot1 = vfmaq_f32(dot1, vld1q_f32(q + j + 4), x1);
            norm0 = vfmaq_f32(norm0, x0, x0);
            norm1 = vfmaq_f32(norm1, x1, x1);
        }
        float dot = vaddvq_f32(vaddq_f32(dot0, dot1)), norm = vaddvq_f32(vaddq_f32(norm0, norm1));
        for (; j < d; ++j) {
            dot += q[j] * row[j];
            norm += row[j] * row[j];
        }
        dots[i] = dot;
        norms[i] = norm;
    }
}

}  // namespace

void register_dense_neon(KernelTable& t) {
    t.dot_norm_f32_rows = dot_norm_rows;
    t.dot_f32 = pair<F32, DotStep>;
    t.l2_f32 = pair<F32, L2Step>;
    t.dot_f16 = pair<F16, DotStep>;
    t.l2_f16 = pair<F16, L2Step>;
    t.dot_bf16 = pair<BF16, DotStep>;
    t.l2_bf16 = pair<BF16, L2Step>;
    t.dot_u8 = pair<U8, DotStep>;
    t.l2_u8 = one<U8, L2ScaledStep>;
    t.dot_f32_rows = pair_rows<F32, DotStep>;
    t.l2_f32_rows = pair_rows<F32, L2Step>;
    t.dot_f16_rows = pair_rows<F16, DotStep>;
    t.l2_f16_rows = pair_rows<F16, L2Step>;
    t.dot_bf16_rows = pair_rows<BF16, DotStep>;
    t.l2_bf16_rows = pair_rows<BF16, L2Step>;
    t.dot_u8_rows = pair_rows<U8, DotStep>;
    t.l2_u8_rows = l2_u8_rows;
}

}  // namespace simdex
