// Kernel family 'rabitq', tier neon (4 floats a register): see reference.inc.
// Four groups at once, one per lane: the table entries as 16 vectors (entry c of groups
// j0 .. j0 + 3), narrowed to bytes and gathered to one 16-byte table per group by a lookup.
#include <arm_neon.h>


#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/rabitq/reference.inc"

// Groups j0 .. j0 + 3 of v (16 doubles from v + 4 j0) as float32: f[t] = value t of every
// group (lane g). LD4 de-interleaves by four: val[t] = [v[t], v[4 + t]].
inline void load_groups_f32x4(const double* v, float32x4_t f[4]) {
    const float64x2x4_t first = vld4q_f64(v), second = vld4q_f64(v + 8);
    for (int t = 0; t < 4; ++t) f[t] = vcvt_high_f32_f64(vcvt_f32_f64(first.val[t]), second.val[t]);
}

// min(a, b) / max(a, b) with the reference's NaN rule (b < a ? b : a; a < b ? b : a):
// FMIN / FMAX would return NaN, so select on the comparison instead.
inline float32x4_t min_f32x4(float32x4_t a, float32x4_t b) { return vbslq_f32(vcltq_f32(b, a), b, a); }
inline float32x4_t max_f32x4(float32x4_t a, float32x4_t b) { return vbslq_f32(vcltq_f32(a, b), b, a); }

// Groups j0 .. j0 + 3 (j0 a multiple of 4): tables stored, their 16 terms min(0, f) added
// to low_sum one by one in index order (a chain of dependent adds, overlapped with the
// tables' arithmetic), returns top_j per lane.
inline uint32x4_t tables_f32x4(const double* v, std::size_t j0, float32x4_t scale, std::uint8_t* lut, float& low_sum) {
    for (std::size_t i = 4 * j0; i < 4 * j0 + 16; ++i) low_sum += rabitq_min(0.0f, static_cast<float>(v[i]));
    float32x4_t f[4];
    load_groups_f32x4(v + 4 * j0, f);
    const float32x4_t zero = vdupq_n_f32(0.0f);
    float32x4_t value[16], low = zero;
    value[0] = zero;
    for (int c = 1; c < 16; ++c) value[c] = vaddq_f32(value[c & (c - 1)], f[__builtin_ctz(c)]);
    for (int t = 0; t < 4; ++t) low = vaddq_f32(low, min_f32x4(zero, f[t]));
    const float32x4_t magic = vdupq_n_f32(rabitq_round_magic), cap = vdupq_n_f32(255.0f);
    uint32x4_t entry[16], top = vdupq_n_u32(0);
    for (int c = 0; c < 16; ++c) {
        const float32x4_t scaled = vmulq_f32(vsubq_f32(value[c], low), scale);
        const float32x4_t rounded = vsubq_f32(vaddq_f32(scaled, magic), magic);
        entry[c] = vcvtq_u32_f32(min_f32x4(cap, rounded));  // an integer in [0, 255]
        top = vmaxq_u32(top, entry[c]);
    }
    // bytes: quad[k] byte 4 c' + g = complemented entry 4 k + c' of group g, so in the 64
    // bytes of quad[0..3] entry c of group g sits at 4 c + g
    uint8x16x4_t quad;
    for (int k = 0; k < 4; ++k) {
        const uint16x8_t low_pair = vcombine_u16(vmovn_u32(vsubq_u32(top, entry[4 * k])),
                                                 vmovn_u32(vsubq_u32(top, entry[4 * k + 1])));
        const uint16x8_t high_pair = vcombine_u16(vmovn_u32(vsubq_u32(top, entry[4 * k + 2])),
                                                  vmovn_u32(vsubq_u32(top, entry[4 * k + 3])));
        quad.val[k] = vcombine_u8(vmovn_u16(low_pair), vmovn_u16(high_pair));
    }
    static const std::uint8_t of_group[16] = {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60};
    const uint8x16_t first = vld1q_u8(of_group);
    for (int g = 0; g < 4; ++g) {
        const uint8x16_t table = vqtbl4q_u8(quad, vaddq_u8(first, vdupq_n_u8(static_cast<std::uint8_t>(g))));
        std::uint8_t* dst = rabitq_group_slot(lut, j0 + g);
        vst1q_u8(dst, table);
    }
    return top;
}

float rabitq_tables_neon(const double* v, std::size_t m4, std::uint8_t* lut, float* bias, float* smax) {
    const std::size_t full = m4 / 4 * 4;  // groups in blocks of 4; the rest as the reference
    float32x4_t max_range_f32x4 = vdupq_n_f32(0.0f);
    for (std::size_t j0 = 0; j0 < full; j0 += 4) {
        float32x4_t f[4];
        load_groups_f32x4(v + 4 * j0, f);
        float32x4_t range = vdupq_n_f32(0.0f);
        for (int t = 0; t < 4; ++t) range = vaddq_f32(range, vabsq_f32(f[t]));
        max_range_f32x4 = max_f32x4(max_range_f32x4, range);
    }
    float lanes[4], max_range = 0;
    vst1q_f32(lanes, max_range_f32x4);
    for (int g = 0; g < 4; ++g) max_range = rabitq_max(max_range, lanes[g]);  // no NaN: any order
    for (std::size_t j = full; j < m4; ++j) max_range = rabitq_max(max_range, rabitq_group_range(v, j));
    const float scale = rabitq_scale(max_range, m4);
    const float32x4_t scale_f32x4 = vdupq_n_f32(scale);
    uint32x4_t total_u32x4 = vdupq_n_u32(0);
    float low_sum = 0;
    for (std::size_t j0 = 0; j0 < full; j0 += 4)
        total_u32x4 = vaddq_u32(total_u32x4, tables_f32x4(v, j0, scale_f32x4, lut, low_sum));
    std::uint32_t total = vaddvq_u32(total_u32x4);
    total += rabitq_rest_reference(v, full, m4, scale, lut, low_sum);
    *bias = low_sum;
    *smax = static_cast<float>(total);
    return scale;
}

}  // namespace

void register_rabitq_neon(KernelTable& table) { table.rabitq_tables = rabitq_tables_neon; }

}  // namespace simdex
