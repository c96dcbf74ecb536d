// GEMM-style inner products, tier haswell (AVX2 + FMA): out[i, j] = <q_i, x_j> for a tile of queries and rows.
//
// Same blocking as gemm/skylake.cpp with 8 lanes (see there for the reasoning):
//   for each block of at most kKc dimensions (d split into equal blocks):
//     for each row panel of 16 rows, packed (kc, 16): panel[t][r] = x[j0 + r, k0 + t]
//       for each block of m <= kMr queries, packed (kc, m) during the first sweep:
//         micro-kernel: m x 16 outputs in m x 2 ymm accumulators (12 of 16 registers);
//         per dimension one pair of row vectors is loaded and each query value is
//         broadcast into 2 FMAs.
// Packing uses 8 x 8 in-register transposes and a scalar loop for the last kc % 8
// dimensions; output tails use vmaskmovps. Each output accumulates its terms in dimension
// order in one float32 lane; blocks after the first start from the stored partial sum.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kMr = 6;       // queries per micro-tile (broadcast operand)
constexpr std::size_t kNr = 16;      // rows per micro-tile: 2 ymm of 8 float32 lanes
constexpr std::size_t kKc = 512;     // dimensions per cache block
constexpr std::size_t kTileQ = 252;  // queries per call (the caller's tile), 42 * kMr
constexpr std::size_t kTileN = 512;  // rows per call (the caller's tile)
constexpr std::size_t kPrefetchEvery = 8;  // dimensions per prefetched line in the micro-kernel
constexpr std::size_t kAlign = 8;    // floats: panels start on 32-byte boundaries
static_assert(kMr >= 1 && kMr <= 8, "run_micro_kernel has cases for 1..8 queries");

std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

// Lanes [0, count) set (all bits), count in [0, 8].
__m256i lane_mask(std::size_t count) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), index);
}

// In place: r[c] becomes column c of the 8 x 8 matrix whose rows were r[0..7].
inline __attribute__((always_inline)) void transpose_8x8(__m256* r) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

// Transposes src rows [0, rows) x dims [k0, k0 + kc) (row stride d, rows <= 8) into
// dst[t * dst_stride + r] for t < kc and lanes r < lanes; missing rows are zero.
void pack_transposed(const float* src, std::size_t rows, std::size_t d, std::size_t k0,
                     std::size_t kc, float* dst, std::size_t dst_stride, std::size_t lanes) {
    __m256i store_mask = lane_mask(lanes);
    std::size_t t0 = 0;
    for (; t0 + 8 <= kc; t0 += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i)
            r[i] = i < rows ? _mm256_loadu_ps(src + i * d + k0 + t0) : _mm256_setzero_ps();
        transpose_8x8(r);
        float* out = dst + t0 * dst_stride;
#pragma GCC unroll 8
        for (std::size_t c = 0; c < 8; ++c)
            _mm256_maskstore_ps(out + c * dst_stride, store_mask, r[c]);
    }
    for (; t0 < kc; ++t0)
        for (std::size_t i = 0; i < lanes; ++i)
            dst[t0 * dst_stride + i] = i < rows ? src[i * d + k0 + t0] : 0.0f;
}

// Rows [j0, j0 + 16) of x (n, d), dims [k0, k0 + kc) -> panel (kc, 16), rows >= n zero.
void pack_row_panel(const float* x, std::size_t n, std::size_t d, std::size_t k0,
                    std::size_t kc, std::size_t j0, float* panel) {
    for (std::size_t half = 0; half < kNr; half += 8) {
        std::size_t row0 = j0 + half;
        std::size_t rows = row0 < n ? min_size(8, n - row0) : 0;
        pack_transposed(x + row0 * d, rows, d, k0, kc, panel + half, kNr, 8);
    }
}

// Starts loading rows [first, last) of src (row stride d), dims [k0, k0 + kc).
void prefetch_rows(const float* src, std::size_t first, std::size_t last, std::size_t d,
                   std::size_t k0, std::size_t kc) {
    for (std::size_t j = first; j < last; ++j) {
        auto line = reinterpret_cast<std::uintptr_t>(src + j * d + k0) & ~std::uintptr_t(63);
        auto end = reinterpret_cast<std::uintptr_t>(src + j * d + k0 + kc - 1);
        for (; line <= end; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
    }
}

// M queries x 16 rows.  qp: (kc, M), xp: (kc, 16) 32-byte aligned.
// out[i * out_stride + j] for j < 16; mask0 / mask1 select the valid rows of each vector,
// full: all 16 rows valid. first: start from zero, else add to the stored partial sums.
// prefetch: prefetch_lines cache lines to start loading, one per kPrefetchEvery dimensions.
template <int M>
void micro_kernel(const float* qp, const float* xp, std::size_t kc, float* out,
                  std::size_t out_stride, bool full, __m256i mask0, __m256i mask1, bool first,
                  const char* prefetch, std::size_t prefetch_lines) {
    __m256 sum_f32x8[M][2];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
        if (first) {
            sum_f32x8[i][0] = _mm256_setzero_ps();
            sum_f32x8[i][1] = _mm256_setzero_ps();
        } else {
            sum_f32x8[i][0] = _mm256_maskload_ps(out + i * out_stride, mask0);
            sum_f32x8[i][1] = _mm256_maskload_ps(out + i * out_stride + 8, mask1);
        }
    }
    for (std::size_t t0 = 0; t0 < kc; t0 += kPrefetchEvery) {
        if (prefetch_lines != 0) {
            _mm_prefetch(prefetch, _MM_HINT_T0);
            prefetch += 64;
            --prefetch_lines;
        }
        std::size_t t_end = min_size(kc, t0 + kPrefetchEvery);
        for (std::size_t t = t0; t < t_end; ++t) {
            __m256 rows0 = _mm256_load_ps(xp);
            __m256 rows1 = _mm256_load_ps(xp + 8);
#pragma GCC unroll 8
            for (int i = 0; i < M; ++i) {
                __m256 query = _mm256_broadcast_ss(qp + i);
                sum_f32x8[i][0] = _mm256_fmadd_ps(query, rows0, sum_f32x8[i][0]);
                sum_f32x8[i][1] = _mm256_fmadd_ps(query, rows1, sum_f32x8[i][1]);
            }
            qp += M;
            xp += kNr;
        }
    }
    if (full) {
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            _mm256_storeu_ps(out + i * out_stride, sum_f32x8[i][0]);
            _mm256_storeu_ps(out + i * out_stride + 8, sum_f32x8[i][1]);
        }
    } else {
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            _mm256_maskstore_ps(out + i * out_stride, mask0, sum_f32x8[i][0]);
            _mm256_maskstore_ps(out + i * out_stride + 8, mask1, sum_f32x8[i][1]);
        }
    }
}

// Which lanes of a panel hold rows: a full panel of 16, or masks for its two halves.
struct RowMasks {
    bool full;
    __m256i mask0, mask1;
};
RowMasks row_masks(std::size_t rows) {
    return {rows == kNr, lane_mask(min_size(rows, 8)), lane_mask(rows > 8 ? rows - 8 : 0)};
}

void pack_query_block(const float* q, std::size_t m, std::size_t d, std::size_t k0,
                      std::size_t kc, float* qp) {
    pack_transposed(q, m, d, k0, kc, qp, m, m);
}

// Runs the micro-kernel for m in [1, kMr] queries.
void run_micro_kernel(std::size_t m, const RowMasks& masks, const float* qp, const float* xp,
                      std::size_t kc, float* out, std::size_t out_stride, bool first,
                      const char* prefetch, std::size_t prefetch_lines) {
    const bool full = masks.full;
    const __m256i mask0 = masks.mask0, mask1 = masks.mask1;
#define SIMDEX_GEMM_CASE(M)                                                           \
    case M:                                                                           \
        if constexpr (M <= kMr)                                                       \
            micro_kernel<M>(qp, xp, kc, out, out_stride, full, mask0, mask1, first,   \
                            prefetch, prefetch_lines);                                \
        break;
    switch (m) {
        SIMDEX_GEMM_CASE(1) SIMDEX_GEMM_CASE(2) SIMDEX_GEMM_CASE(3) SIMDEX_GEMM_CASE(4)
        SIMDEX_GEMM_CASE(5) SIMDEX_GEMM_CASE(6) SIMDEX_GEMM_CASE(7) SIMDEX_GEMM_CASE(8)
        default: break;
    }
#undef SIMDEX_GEMM_CASE
}

#include "kernels/gemm/packed_rows.inc"
#include "kernels/gemm/ip_block.inc"

constexpr std::uintptr_t kPanelAlignBytes = 32;
#include "kernels/gemm/tile_entry.inc"

}  // namespace

void register_gemm_haswell(KernelTable& t) {
    register_blocked(t);
}

}  // namespace simdex
