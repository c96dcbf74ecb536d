// Kernel family 'rabitq', tier haswell (AVX2, 8 floats a register): see reference.inc.
// Eight groups at once, one per lane: the table entries as 16 vectors (entry c of groups
// j0 .. j0 + 7), packed to bytes and transposed to one 16-byte table per group. The terms of
// bias are added one by one inside the same loop, so their chain of dependent adds (about
// half of the time at d = 384) overlaps the tables' arithmetic. Inherited by skylake and
// icelake: 16 groups per AVX-512 register would only shorten the arithmetic, not the chain.
#include <immintrin.h>


#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/rabitq/reference.inc"

// Groups j0 .. j0 + 7 of v (32 doubles from v + 4 j0) as float32: rows[g] = group g's four
// values in index order, f[t] = value t of every group (lane g).
inline void load_groups_f32x8(const double* v, __m128 rows[8], __m256 f[4]) {
    for (int g = 0; g < 8; ++g) rows[g] = _mm256_cvtpd_ps(_mm256_loadu_pd(v + 4 * g));
    // 4x4 transposes in both halves: [group g | group g + 4] -> [value t of groups 0..3 | 4..7]
    const __m256 a = _mm256_set_m128(rows[4], rows[0]), b = _mm256_set_m128(rows[5], rows[1]);
    const __m256 c = _mm256_set_m128(rows[6], rows[2]), d = _mm256_set_m128(rows[7], rows[3]);
    const __m256d ab01 = _mm256_castps_pd(_mm256_unpacklo_ps(a, b));  // a0 b0 a1 b1
    const __m256d ab23 = _mm256_castps_pd(_mm256_unpackhi_ps(a, b));  // a2 b2 a3 b3
    const __m256d cd01 = _mm256_castps_pd(_mm256_unpacklo_ps(c, d));
    const __m256d cd23 = _mm256_castps_pd(_mm256_unpackhi_ps(c, d));
    f[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(ab01, cd01));  // a0 b0 c0 d0
    f[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(ab01, cd01));
    f[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(ab23, cd23));
    f[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(ab23, cd23));
}

// min(a, b) / max(a, b) with the reference's NaN rule (b < a ? b : a; a < b ? b : a):
// minps / maxps return their second operand unless the comparison of the first holds.
inline __m256 min_f32x8(__m256 a, __m256 b) { return _mm256_min_ps(b, a); }
inline __m256 max_f32x8(__m256 a, __m256 b) { return _mm256_max_ps(b, a); }

// Groups j0 .. j0 + 7 (j0 a multiple of 8): tables stored, their 32 terms min(0, f) added
// to low_sum one by one in index order (a chain of dependent adds, overlapped with the
// tables' arithmetic), returns top_j per lane.
inline __m256i tables_f32x8(const double* v, std::size_t j0, __m256 scale, std::uint8_t* lut, float& low_sum) {
    __m128 rows[8];
    __m256 f[4];
    load_groups_f32x8(v + 4 * j0, rows, f);
    float terms[32];
    for (int g = 0; g < 8; ++g) _mm_storeu_ps(terms + 4 * g, _mm_min_ps(rows[g], _mm_setzero_ps()));
    for (int i = 0; i < 32; ++i) low_sum += terms[i];
    const __m256 zero = _mm256_setzero_ps();
    __m256 value[16], low = zero;
    value[0] = zero;
    for (int c = 1; c < 16; ++c) value[c] = _mm256_add_ps(value[c & (c - 1)], f[__builtin_ctz(c)]);
    for (int t = 0; t < 4; ++t) low = _mm256_add_ps(low, min_f32x8(zero, f[t]));
    const __m256 magic = _mm256_set1_ps(rabitq_round_magic), cap = _mm256_set1_ps(255.0f);
    __m256i entry[16], top = _mm256_setzero_si256();
    for (int c = 0; c < 16; ++c) {
        const __m256 scaled = _mm256_mul_ps(_mm256_sub_ps(value[c], low), scale);
        const __m256 rounded = _mm256_sub_ps(_mm256_add_ps(scaled, magic), magic);
        entry[c] = _mm256_cvttps_epi32(min_f32x8(cap, rounded));  // an integer in [0, 255]
        top = _mm256_max_epi32(top, entry[c]);
    }
    // bytes, per 128-bit half: quad[k] byte 4 c' + g = entry 4 k + c' of group g (+ 4 in the
    // high half); top repeated the same way, so one byte subtraction complements
    const __m256i top_u8 = _mm256_packus_epi16(_mm256_packs_epi32(top, top), _mm256_packs_epi32(top, top));
    const __m256i to_group_major = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                                    0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m256i quad[4];
    for (int k = 0; k < 4; ++k) {
        const __m256i low_pair = _mm256_packs_epi32(entry[4 * k], entry[4 * k + 1]);
        const __m256i high_pair = _mm256_packs_epi32(entry[4 * k + 2], entry[4 * k + 3]);
        const __m256i complemented = _mm256_sub_epi8(top_u8, _mm256_packus_epi16(low_pair, high_pair));
        quad[k] = _mm256_shuffle_epi8(complemented, to_group_major);  // dword g = group g's 4 entries
    }
    const __m256i q01_lo = _mm256_unpacklo_epi32(quad[0], quad[1]), q23_lo = _mm256_unpacklo_epi32(quad[2], quad[3]);
    const __m256i q01_hi = _mm256_unpackhi_epi32(quad[0], quad[1]), q23_hi = _mm256_unpackhi_epi32(quad[2], quad[3]);
    __m256i group[4];  // group[g]: the table of group j0 + g | of group j0 + 4 + g
    group[0] = _mm256_unpacklo_epi64(q01_lo, q23_lo);
    group[1] = _mm256_unpackhi_epi64(q01_lo, q23_lo);
    group[2] = _mm256_unpacklo_epi64(q01_hi, q23_hi);
    group[3] = _mm256_unpackhi_epi64(q01_hi, q23_hi);
    for (int g = 0; g < 4; ++g) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(rabitq_group_slot(lut, j0 + g)), _mm256_castsi256_si128(group[g]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(rabitq_group_slot(lut, j0 + 4 + g)),
                         _mm256_extracti128_si256(group[g], 1));
    }
    return top;
}

float rabitq_tables_haswell(const double* v, std::size_t m4, std::uint8_t* lut, float* bias, float* smax) {
    const std::size_t full = m4 / 8 * 8;  // groups in blocks of 8; the rest as the reference
    const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    __m256 max_range_f32x8 = zero;
    for (std::size_t j0 = 0; j0 < full; j0 += 8) {
        __m128 rows[8];
        __m256 f[4];
        load_groups_f32x8(v + 4 * j0, rows, f);
        __m256 range = zero;
        for (int t = 0; t < 4; ++t) range = _mm256_add_ps(range, _mm256_andnot_ps(sign, f[t]));
        max_range_f32x8 = max_f32x8(max_range_f32x8, range);
    }
    float lanes[8], max_range = 0;
    _mm256_storeu_ps(lanes, max_range_f32x8);
    for (int g = 0; g < 8; ++g) max_range = rabitq_max(max_range, lanes[g]);  // no NaN: any order
    for (std::size_t j = full; j < m4; ++j) max_range = rabitq_max(max_range, rabitq_group_range(v, j));
    const float scale = rabitq_scale(max_range, m4);
    const __m256 scale_f32x8 = _mm256_set1_ps(scale);
    __m256i total_u32x8 = _mm256_setzero_si256();
    float low_sum = 0;
    for (std::size_t j0 = 0; j0 < full; j0 += 8)
        total_u32x8 = _mm256_add_epi32(total_u32x8, tables_f32x8(v, j0, scale_f32x8, lut, low_sum));
    std::uint32_t tops[8], total = 0;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tops), total_u32x8);
    for (int g = 0; g < 8; ++g) total += tops[g];
    total += rabitq_rest_reference(v, full, m4, scale, lut, low_sum);
    *bias = low_sum;
    *smax = static_cast<float>(total);
    return scale;
}

}  // namespace

void register_rabitq_haswell(KernelTable& table) { table.rabitq_tables = rabitq_tables_haswell; }

}  // namespace simdex
