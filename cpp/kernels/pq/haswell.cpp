// Kernel family 'pq', tier haswell (AVX2 + BMI2): see pq.hpp for the math and layouts.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/pq/adc_u8.inc"

// Q queries per pass over the blocks: the code nibbles are extracted once and used Q times.
// tables[qi]: the tables of query query0 + qi. Bytes (fastscan_tables_u4): every table entry
// is <= 63, so a group's four lookups are summed as bytes before widening (three byte adds
// and one shift per group and query instead of six adds and four shifts: the shifts share
// the shuffles' two ports), and the tables are compact (16 bytes each, broadcast to both
// lanes by the load: 8 queries' tables take 12 kB of L1 instead of 24).
template <int Q, bool Bytes = false>
void fastscan_queries_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                           const std::uint8_t* const* tables, std::size_t query0,
                           std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    const std::size_t groups = m4 / 4;
    const __m256i nibble_u8x32 = _mm256_set1_epi8(0x0F);
    alignas(32) std::uint16_t sums[32];
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        __m256i all_u16x16[Q], high_u16x16[Q];
        for (int qi = 0; qi < Q; ++qi) {
            all_u16x16[qi] = _mm256_setzero_si256();
            high_u16x16[qi] = _mm256_setzero_si256();
        }
        for (std::size_t g = 0; g < groups; ++g) {
            const __m256i codes0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + g * 64));
            const __m256i codes1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + g * 64 + 32));
            const __m256i low0 = _mm256_and_si256(codes0, nibble_u8x32);
            const __m256i low1 = _mm256_and_si256(codes1, nibble_u8x32);
            const __m256i high0 = _mm256_and_si256(_mm256_srli_epi16(codes0, 4), nibble_u8x32);
            const __m256i high1 = _mm256_and_si256(_mm256_srli_epi16(codes1, 4), nibble_u8x32);
            for (int qi = 0; qi < Q; ++qi) {
                const std::uint8_t* table = tables[qi] + g * (Bytes ? 64 : 128);
                auto tab = [&](int i) {  // sub-space table i of the group, in both lanes
                    if constexpr (Bytes)
                        return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + i * 16)));
                    else
                        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + i * 32));
                };
                __m256i r0 = _mm256_shuffle_epi8(tab(0), low0);
                __m256i r1 = _mm256_shuffle_epi8(tab(1), low1);
                __m256i r2 = _mm256_shuffle_epi8(tab(2), high0);
                __m256i r3 = _mm256_shuffle_epi8(tab(3), high1);
                if constexpr (Bytes) {
                    const __m256i r = _mm256_add_epi8(_mm256_add_epi8(r0, r1), _mm256_add_epi8(r2, r3));
                    all_u16x16[qi] = _mm256_add_epi16(all_u16x16[qi], r);
                    high_u16x16[qi] = _mm256_add_epi16(high_u16x16[qi], _mm256_srli_epi16(r, 8));
                } else {
                    __m256i a = _mm256_add_epi16(_mm256_add_epi16(r0, r1), _mm256_add_epi16(r2, r3));
                    __m256i h = _mm256_add_epi16(
                        _mm256_add_epi16(_mm256_srli_epi16(r0, 8), _mm256_srli_epi16(r1, 8)),
                        _mm256_add_epi16(_mm256_srli_epi16(r2, 8), _mm256_srli_epi16(r3, 8)));
                    all_u16x16[qi] = _mm256_add_epi16(all_u16x16[qi], a);
                    high_u16x16[qi] = _mm256_add_epi16(high_u16x16[qi], h);
                }
            }
        }
        for (int qi = 0; qi < Q; ++qi) {
            const std::size_t q = query0 + qi;
            const __m256i even = _mm256_sub_epi16(all_u16x16[qi], _mm256_slli_epi16(high_u16x16[qi], 8));
            const __m256i odd = high_u16x16[qi];
            const __m256i limit = _mm256_set1_epi16(static_cast<short>(thresholds[q]));
            const __m256i pass_even = _mm256_cmpeq_epi16(_mm256_min_epu16(even, limit), even);
            const __m256i pass_odd = _mm256_cmpeq_epi16(_mm256_min_epu16(odd, limit), odd);
            const std::uint32_t mask =
                _pext_u32(static_cast<std::uint32_t>(_mm256_movemask_epi8(pass_even)), 0x55555555u) |
                (_pext_u32(static_cast<std::uint32_t>(_mm256_movemask_epi8(pass_odd)), 0x55555555u) << 16);
            if (mask) {
                _mm256_store_si256(reinterpret_cast<__m256i*>(sums), even);
                _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 16), odd);
                emit(context, q, b, mask, sums);
            }
        }
    }
}

// Queries q .. q + n - 1 (n <= 4) in one pass.
void fastscan_group_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                            const std::uint8_t* const* tables, std::size_t q, std::size_t n,
                            std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    switch (n) {
        case 4: fastscan_queries_haswell<4>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 3: fastscan_queries_haswell<3>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 2: fastscan_queries_haswell<2>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 1: fastscan_queries_haswell<1>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        default: break;
    }
}

void fastscan_u4_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                      const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                      FastScanEmit emit, void* context) {
    const std::uint8_t* tables[4];
    for (std::size_t q = 0; q < nq; q += 4) {
        const std::size_t n = std::min<std::size_t>(4, nq - q);
        for (std::size_t j = 0; j < n; ++j) tables[j] = luts + (q + j) * m4 * 32;
        fastscan_group_haswell(blocks, nblocks, m4, tables, q, n, thresholds, emit, context);
    }
}

void fastscan_tables_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                             const std::uint8_t* const* tables, std::size_t nq, std::uint16_t* thresholds,
                             FastScanEmit emit, void* context) {
    std::size_t q = 0;
    for (; q + 8 <= nq; q += 8)
        fastscan_queries_haswell<8, true>(blocks, nblocks, m4, tables + q, q, thresholds, emit, context);
    const std::uint8_t* const* t = tables + q;
    switch (nq - q) {
        case 7: fastscan_queries_haswell<7, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 6: fastscan_queries_haswell<6, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 5: fastscan_queries_haswell<5, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 4: fastscan_queries_haswell<4, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 3: fastscan_queries_haswell<3, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 2: fastscan_queries_haswell<2, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        case 1: fastscan_queries_haswell<1, true>(blocks, nblocks, m4, t, q, thresholds, emit, context); break;
        default: break;
    }
}

// One query: the four shuffled bytes of a group are added as bytes (entries <= 63, see
// pq.hpp) and widened once, instead of once each.
void fastscan1_u4_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                          const std::uint8_t* lut, std::uint16_t* sums) {
    const std::size_t groups = m4 / 4;
    const __m256i nibble_u8x32 = _mm256_set1_epi8(0x0F);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        __m256i all_u16x16 = _mm256_setzero_si256(), high_u16x16 = _mm256_setzero_si256();
        for (std::size_t g = 0; g < groups; ++g) {
            const __m256i codes0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + g * 64));
            const __m256i codes1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + g * 64 + 32));
            const std::uint8_t* table = lut + g * 128;
            const __m256i r0 = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table)),
                                                   _mm256_and_si256(codes0, nibble_u8x32));
            const __m256i r1 = _mm256_shuffle_epi8(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 32)), _mm256_and_si256(codes1, nibble_u8x32));
            const __m256i r2 = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 64)),
                                                   _mm256_and_si256(_mm256_srli_epi16(codes0, 4), nibble_u8x32));
            const __m256i r3 = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 96)),
                                                   _mm256_and_si256(_mm256_srli_epi16(codes1, 4), nibble_u8x32));
            const __m256i s = _mm256_add_epi8(_mm256_add_epi8(r0, r1), _mm256_add_epi8(r2, r3));
            all_u16x16 = _mm256_add_epi16(all_u16x16, s);
            high_u16x16 = _mm256_add_epi16(high_u16x16, _mm256_srli_epi16(s, 8));
        }
        const __m256i even = _mm256_sub_epi16(all_u16x16, _mm256_slli_epi16(high_u16x16, 8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + b * 32), even);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + b * 32 + 16), high_u16x16);
    }
}

// Nearest centroid, register-blocked: P points x 2 vectors of 8 centroids per step (see the
// AVX-512 file); the running minimum and its label stay in registers.
template <int P>
void nearest_points_haswell(const float* x, std::size_t d, const float* centroids_t,
                         std::size_t stride, const float* norms, std::size_t count,
                         std::int64_t first_label, float* best, std::int64_t* labels) {
    __m256 best_f32x8[P][2];
    __m256i best_i32x8[P][2];
    for (int p = 0; p < P; ++p)
        for (int r = 0; r < 2; ++r) {
            best_f32x8[p][r] = _mm256_set1_ps(__builtin_inff());
            best_i32x8[p][r] = _mm256_setzero_si256();
        }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (std::size_t c0 = 0; c0 < count; c0 += 16) {
        __m256 accumulator[P][2];
        const __m256 norm0 = _mm256_loadu_ps(norms + c0), norm1 = _mm256_loadu_ps(norms + c0 + 8);
        for (int p = 0; p < P; ++p) {
            accumulator[p][0] = norm0;
            accumulator[p][1] = norm1;
        }
        for (std::size_t j = 0; j < d; ++j) {
            const float* row = centroids_t + j * stride + c0;
            const __m256 column0 = _mm256_loadu_ps(row), column1 = _mm256_loadu_ps(row + 8);
            for (int p = 0; p < P; ++p) {
                const __m256 weight = _mm256_set1_ps(x[p * d + j]);  // rows come as -2 x
                accumulator[p][0] = _mm256_fmadd_ps(weight, column0, accumulator[p][0]);
                accumulator[p][1] = _mm256_fmadd_ps(weight, column1, accumulator[p][1]);
            }
        }
        for (int r = 0; r < 2; ++r) {
            const __m256i label = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(c0 + 8 * r)));
            for (int p = 0; p < P; ++p) {
                const __m256 better = _mm256_cmp_ps(accumulator[p][r], best_f32x8[p][r], _CMP_LT_OQ);
                best_f32x8[p][r] = _mm256_blendv_ps(best_f32x8[p][r], accumulator[p][r], better);
                best_i32x8[p][r] = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(best_i32x8[p][r]), _mm256_castsi256_ps(label), better));
            }
        }
    }
    alignas(32) float values[16];
    alignas(32) std::int32_t indices[16];
    for (int p = 0; p < P; ++p) {
        _mm256_store_ps(values, best_f32x8[p][0]);
        _mm256_store_ps(values + 8, best_f32x8[p][1]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(indices), best_i32x8[p][0]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(indices + 8), best_i32x8[p][1]);
        float smallest = best[p];
        std::int64_t label = -1;
        for (int c = 0; c < 16; ++c)
            if (values[c] < smallest || (label >= 0 && values[c] == smallest && indices[c] < label)) {
                smallest = values[c];
                label = indices[c];
            }
        if (label >= 0) {
            best[p] = smallest;
            labels[p] = first_label + label;
        }
    }
}

void nearest_f32_haswell(const float* x, std::size_t n, std::size_t d, const float* centroids_t,
                      std::size_t stride, const float* norms, std::size_t count,
                      std::int64_t first_label, float* best, std::int64_t* labels) {
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4)
        nearest_points_haswell<4>(x + i * d, d, centroids_t, stride, norms, count, first_label, best + i, labels + i);
    for (; i < n; ++i)
        nearest_points_haswell<1>(x + i * d, d, centroids_t, stride, norms, count, first_label, best + i, labels + i);
}

}  // namespace

void register_pq_haswell(KernelTable& table) {
    table.pq.adc_u8 = adc_u8_rows;
    table.pq.fastscan_u4 = fastscan_u4_haswell;
    table.pq.fastscan_tables_u4 = fastscan_tables_haswell;
    table.pq.fastscan1_u4 = fastscan1_u4_haswell;
    table.pq.nearest_f32 = nearest_f32_haswell;
}

}  // namespace simdex
