// Kernel family 'pq', tier skylake (AVX-512 F/BW/VL): see pq.hpp for the math and layouts.
// GCC 12's AVX-512 headers trip -Wuninitialized inside reduce/extract intrinsics (GCC bug
// 105593, a false positive in the header, not in this file).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/pq/adc_u8.inc"
#include "kernels/pq/fastscan_avx2.inc"

// Q queries per pass (tables[qi]: the tables of query query0 + qi); one 64-byte load covers two sub-space pairs (lanes 0-1: pair 2g,
// lanes 2-3: pair 2g+1, the same 32 rows), so the two 256-bit halves are added at the end.
// fastscan_tables_u4 (compact tables) is the 256-bit body of fastscan_avx2.inc compiled here
// (32 vector registers: no spills in the 8-query pass): a 512-bit form (tables spread to
// their lanes by a shuffle, or by a broadcast and a merge-masked broadcast; 4 or 8 queries
// per pass; lookups summed as bytes) ran 11-17% slower than the 8-query 256-bit kernel in the
// IVF RaBitQ search on a Zen 4 (bench/RESULTS.md section 9).
template <int Q>
void fastscan_queries_skylake(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                             const std::uint8_t* const* tables, std::size_t query0,
                             std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    const std::size_t groups = m4 / 4;
    const __m512i nibble_u8x64 = _mm512_set1_epi8(0x0F);
    alignas(32) std::uint16_t sums[32];
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        __m512i all_u16x32[Q], high_u16x32[Q];
        for (int qi = 0; qi < Q; ++qi) {
            all_u16x32[qi] = _mm512_setzero_si512();
            high_u16x32[qi] = _mm512_setzero_si512();
        }
        for (std::size_t g = 0; g < groups; ++g) {
            const __m512i codes_u8x64 = _mm512_loadu_si512(block + g * 64);
            const __m512i low = _mm512_and_si512(codes_u8x64, nibble_u8x64);
            const __m512i high = _mm512_and_si512(_mm512_srli_epi16(codes_u8x64, 4), nibble_u8x64);
            for (int qi = 0; qi < Q; ++qi) {
                const std::uint8_t* table = tables[qi] + g * 128;  // low tables of pairs 2g, 2g+1, then high
                const __m512i r0 = _mm512_shuffle_epi8(_mm512_loadu_si512(table), low);
                const __m512i r1 = _mm512_shuffle_epi8(_mm512_loadu_si512(table + 64), high);
                all_u16x32[qi] = _mm512_add_epi16(all_u16x32[qi], _mm512_add_epi16(r0, r1));
                high_u16x32[qi] = _mm512_add_epi16(
                    high_u16x32[qi], _mm512_add_epi16(_mm512_srli_epi16(r0, 8), _mm512_srli_epi16(r1, 8)));
            }
        }
        for (int qi = 0; qi < Q; ++qi) {
            const std::size_t q = query0 + qi;
            const __m256i all = _mm256_add_epi16(_mm512_castsi512_si256(all_u16x32[qi]),
                                                 _mm512_extracti64x4_epi64(all_u16x32[qi], 1));
            const __m256i odd = _mm256_add_epi16(_mm512_castsi512_si256(high_u16x32[qi]),
                                                 _mm512_extracti64x4_epi64(high_u16x32[qi], 1));
            const __m256i even = _mm256_sub_epi16(all, _mm256_slli_epi16(odd, 8));
            const __m256i limit = _mm256_set1_epi16(static_cast<short>(thresholds[q]));
            const std::uint32_t mask =
                static_cast<std::uint32_t>(_mm256_cmple_epu16_mask(even, limit)) |
                (static_cast<std::uint32_t>(_mm256_cmple_epu16_mask(odd, limit)) << 16);
            if (mask) {
                _mm256_store_si256(reinterpret_cast<__m256i*>(sums), even);
                _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 16), odd);
                emit(context, q, b, mask, sums);
            }
        }
    }
}

// One query: the low- and high-nibble lookups of a group are added as bytes (entries <= 63,
// see pq.hpp) and widened once; the two 256-bit halves (pairs 2g and 2g+1) are added at the end.
void fastscan1_u4_skylake(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                          const std::uint8_t* lut, std::uint16_t* sums) {
    const std::size_t groups = m4 / 4;
    const __m512i nibble_u8x64 = _mm512_set1_epi8(0x0F);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        __m512i all_u16x32 = _mm512_setzero_si512(), high_u16x32 = _mm512_setzero_si512();
        for (std::size_t g = 0; g < groups; ++g) {
            const __m512i codes_u8x64 = _mm512_loadu_si512(block + g * 64);
            const std::uint8_t* table = lut + g * 128;
            const __m512i r0 = _mm512_shuffle_epi8(_mm512_loadu_si512(table), _mm512_and_si512(codes_u8x64, nibble_u8x64));
            const __m512i r1 = _mm512_shuffle_epi8(_mm512_loadu_si512(table + 64),
                                                   _mm512_and_si512(_mm512_srli_epi16(codes_u8x64, 4), nibble_u8x64));
            const __m512i s = _mm512_add_epi8(r0, r1);
            all_u16x32 = _mm512_add_epi16(all_u16x32, s);
            high_u16x32 = _mm512_add_epi16(high_u16x32, _mm512_srli_epi16(s, 8));
        }
        const __m256i all = _mm256_add_epi16(_mm512_castsi512_si256(all_u16x32), _mm512_extracti64x4_epi64(all_u16x32, 1));
        const __m256i odd = _mm256_add_epi16(_mm512_castsi512_si256(high_u16x32), _mm512_extracti64x4_epi64(high_u16x32, 1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + b * 32), _mm256_sub_epi16(all, _mm256_slli_epi16(odd, 8)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + b * 32 + 16), odd);
    }
}

// Queries q .. q + n - 1 (n <= 4) in one pass.
void fastscan_group_skylake(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                            const std::uint8_t* const* tables, std::size_t q, std::size_t n,
                            std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    switch (n) {
        case 4: fastscan_queries_skylake<4>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 3: fastscan_queries_skylake<3>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 2: fastscan_queries_skylake<2>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        case 1: fastscan_queries_skylake<1>(blocks, nblocks, m4, tables, q, thresholds, emit, context); break;
        default: break;
    }
}

void fastscan_u4_skylake(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                      const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                      FastScanEmit emit, void* context) {
    const std::uint8_t* tables[4];
    for (std::size_t q = 0; q < nq; q += 4) {
        const std::size_t n = std::min<std::size_t>(4, nq - q);
        for (std::size_t j = 0; j < n; ++j) tables[j] = luts + (q + j) * m4 * 32;
        fastscan_group_skylake(blocks, nblocks, m4, tables, q, n, thresholds, emit, context);
    }
}

// Nearest centroid, register-blocked like a GEMM micro-kernel: P points x R vectors of 16
// centroids per step (P * R accumulators), one broadcast of -2 x_j per point and one load
// of 16 centroid coordinates per vector for every dimension j; the running minimum and its
// label stay in registers (strict <: the first, lowest label wins a tie within a lane).
template <int P, int R>
void nearest_step_skylake(const float* const* points, std::size_t d, const float* centroids_t,
                         std::size_t stride, const float* norms, std::size_t c0,
                         __m512* best_f32x16, __m512i* best_i32x16) {
    __m512 accumulator[P][R];
    for (int r = 0; r < R; ++r) {
        const __m512 norm = _mm512_loadu_ps(norms + c0 + 16 * r);
        for (int p = 0; p < P; ++p) accumulator[p][r] = norm;
    }
    for (std::size_t j = 0; j < d; ++j) {
        const float* row = centroids_t + j * stride + c0;
        __m512 column[R];
        for (int r = 0; r < R; ++r) column[r] = _mm512_loadu_ps(row + 16 * r);
        for (int p = 0; p < P; ++p) {
            const __m512 weight = _mm512_set1_ps(points[p][j]);  // rows come as -2 x
            for (int r = 0; r < R; ++r) accumulator[p][r] = _mm512_fmadd_ps(weight, column[r], accumulator[p][r]);
        }
    }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int r = 0; r < R; ++r) {
        const __m512i label = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(c0 + 16 * r)));
        for (int p = 0; p < P; ++p) {
            const __mmask16 better = _mm512_cmp_ps_mask(accumulator[p][r], best_f32x16[p], _CMP_LT_OQ);
            best_f32x16[p] = _mm512_mask_mov_ps(best_f32x16[p], better, accumulator[p][r]);
            best_i32x16[p] = _mm512_mask_mov_epi32(best_i32x16[p], better, label);
        }
    }
}

template <int P>
void nearest_points_skylake(const float* x, std::size_t d, const float* centroids_t,
                           std::size_t stride, const float* norms, std::size_t count,
                           std::int64_t first_label, float* best, std::int64_t* labels) {
    const float* points[P];
    __m512 best_f32x16[P];
    __m512i best_i32x16[P];
    for (int p = 0; p < P; ++p) {
        points[p] = x + p * d;
        best_f32x16[p] = _mm512_set1_ps(__builtin_inff());
        best_i32x16[p] = _mm512_setzero_si512();
    }
    std::size_t c0 = 0;
    for (; c0 + 64 <= count; c0 += 64)
        nearest_step_skylake<P, 4>(points, d, centroids_t, stride, norms, c0, best_f32x16, best_i32x16);
    for (; c0 < count; c0 += 16)
        nearest_step_skylake<P, 1>(points, d, centroids_t, stride, norms, c0, best_f32x16, best_i32x16);
    for (int p = 0; p < P; ++p) {
        const float smallest = _mm512_reduce_min_ps(best_f32x16[p]);
        if (smallest < best[p]) {
            const __mmask16 ties = _mm512_cmp_ps_mask(best_f32x16[p], _mm512_set1_ps(smallest), _CMP_EQ_OQ);
            best[p] = smallest;
            labels[p] = first_label + _mm512_mask_reduce_min_epi32(ties, best_i32x16[p]);
        }
    }
}

void nearest_f32_skylake(const float* x, std::size_t n, std::size_t d, const float* centroids_t,
                        std::size_t stride, const float* norms, std::size_t count,
                        std::int64_t first_label, float* best, std::int64_t* labels) {
    std::size_t i = 0;
    for (; i + 6 <= n; i += 6)
        nearest_points_skylake<6>(x + i * d, d, centroids_t, stride, norms, count, first_label, best + i, labels + i);
    for (; i + 4 <= n; i += 4)
        nearest_points_skylake<4>(x + i * d, d, centroids_t, stride, norms, count, first_label, best + i, labels + i);
    for (; i < n; ++i)
        nearest_points_skylake<1>(x + i * d, d, centroids_t, stride, norms, count, first_label, best + i, labels + i);
}

}  // namespace

void register_pq_skylake(KernelTable& table) {
    table.pq.adc_u8 = adc_u8_rows;
    table.pq.fastscan_u4 = fastscan_u4_skylake;
    table.pq.fastscan_tables_u4 = fastscan_tables_avx2;
    table.pq.fastscan1_u4 = fastscan1_u4_skylake;
    table.pq.nearest_f32 = nearest_f32_skylake;
}

}  // namespace simdex
