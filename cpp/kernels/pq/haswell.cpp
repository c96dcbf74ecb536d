// Kernel family 'pq', tier haswell (AVX2 + BMI2): see pq.hpp for the math and layouts.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/pq/adc_u8.inc"

#include "kernels/pq/fastscan_avx2.inc"

// Queries q .. q + n - 1 (n <= 4) in one pass.
void fastscan_group_haswell(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                            const std::uint8_t* const* tables, std::size_t q, std::size_t n,
                            std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    switch (n) {
        case 4: fastscan_queries_avx2<4>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 3: fastscan_queries_avx2<3>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 2: fastscan_queries_avx2<2>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 1: fastscan_queries_avx2<1>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
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
    table.pq.fastscan_tables_u4 = fastscan_tables_avx2;
    table.pq.fastscan1_u4 = fastscan1_u4_haswell;
    table.pq.nearest_f32 = nearest_f32_haswell;
}

}  // namespace simdex
