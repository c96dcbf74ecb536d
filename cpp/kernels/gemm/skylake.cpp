// GEMM-style inner products, tier skylake (AVX-512 F): out[i, j] = <q_i, x_j> for a tile of queries and rows.
//
// Blocking (BLIS-style, inside one ip_tile_f32 call; the caller keeps nq <= kTileQ, n <= kTileN):
//   for each block of at most kKc dimensions (d split into equal blocks; one block for d <= 512,
//   so each output is written once):
//     for each row panel of 32 rows, packed (kc, 32): panel[t][r] = x[j0 + r, k0 + t]
//       for each block of m <= kMr queries, packed (kc, m) while the first panel is swept:
//         micro-kernel: m x 32 outputs in m x 2 zmm accumulators (24 of 32 registers); per
//         dimension one pair of row vectors is loaded and each query value is broadcast
//         (vbroadcastss) into 2 FMAs.
// The packed queries (<= 252 x 512 floats) stay in the 1 MiB L2 while the row panels pass;
// a row panel is used by every query block before the next one is packed, and the micro-tiles
// of one sweep prefetch the next panel's rows one line per 8 dimensions, so reading x from
// DRAM overlaps the FMAs instead of stalling the packing (bursts of prefetches filled the
// miss buffers and stalled; measured 73% -> 82% of the time in the micro-kernel).
//
// Packing uses 16 x 16 in-register transposes (masked loads for the last kc % 16 dimensions,
// zero lanes for missing rows); output tails are masked stores. Each output accumulates its
// terms in dimension order in one float32 lane; blocks after the first start from the stored
// partial sum.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kMr = 12;      // queries per micro-tile (broadcast operand)
constexpr std::size_t kNr = 32;      // rows per micro-tile: 2 zmm of 16 float32 lanes
constexpr std::size_t kKc = 512;     // dimensions per cache block
constexpr std::size_t kTileQ = 252;  // queries per call (the caller's tile), 21 * kMr
constexpr std::size_t kTileN = 512;  // rows per call (the caller's tile)
constexpr std::size_t kPrefetchEvery = 8;  // dimensions per prefetched line in the micro-kernel
constexpr std::size_t kAlign = 16;   // floats: panels start on 64-byte lines
static_assert(kMr >= 1 && kMr <= 14, "run_micro_kernel has cases for 1..14 queries");

std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

__mmask16 lane_mask(std::size_t count) {  // lanes [0, count) for count in [0, 16]
    return count >= 16 ? static_cast<__mmask16>(0xFFFF)
                       : static_cast<__mmask16>((1u << count) - 1u);
}

// In place: r[c] becomes column c of the 16 x 16 matrix whose rows were r[0..15].
inline __attribute__((always_inline)) void transpose_16x16(__m512* r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int h = 0; h < 16; h += 8) {
        for (int i = 0; i < 4; ++i) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

// Transposes src rows [0, rows) x dims [k0, k0 + kc) (row stride d, rows <= 16) into
// dst[t * dst_stride + r] for t < kc, lanes r < 16 selected by store_mask; missing rows are zero.
void pack_transposed(const float* src, std::size_t rows, std::size_t d, std::size_t k0,
                     std::size_t kc, float* dst, std::size_t dst_stride, __mmask16 store_mask) {
    for (std::size_t t0 = 0; t0 < kc; t0 += 16) {
        std::size_t cols = min_size(16, kc - t0);
        __mmask16 m = lane_mask(cols);
        __m512 r[16];
#pragma GCC unroll 16
        for (std::size_t i = 0; i < 16; ++i)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(m, src + i * d + k0 + t0) : _mm512_setzero_ps();
        transpose_16x16(r);
        float* out = dst + t0 * dst_stride;
        if (cols == 16) {
#pragma GCC unroll 16
            for (std::size_t c = 0; c < 16; ++c)
                _mm512_mask_storeu_ps(out + c * dst_stride, store_mask, r[c]);
        } else {
#pragma GCC unroll 16
            for (std::size_t c = 0; c < 16; ++c)
                if (c < cols) _mm512_mask_storeu_ps(out + c * dst_stride, store_mask, r[c]);
        }
    }
}

// Rows [j0, j0 + 32) of x (n, d), dims [k0, k0 + kc) -> panel (kc, 32), rows >= n zero.
void pack_row_panel(const float* x, std::size_t n, std::size_t d, std::size_t k0,
                    std::size_t kc, std::size_t j0, float* panel) {
    for (std::size_t half = 0; half < kNr; half += 16) {
        std::size_t row0 = j0 + half;
        std::size_t rows = row0 < n ? min_size(16, n - row0) : 0;
        pack_transposed(x + row0 * d, rows, d, k0, kc, panel + half, kNr,
                        static_cast<__mmask16>(0xFFFF));
    }
}

// Starts loading rows [first, last) of src (row stride d), dims [k0, k0 + kc), so that packing
// them later does not stall on memory while the current micro-tiles are being multiplied.
void prefetch_rows(const float* src, std::size_t first, std::size_t last, std::size_t d,
                   std::size_t k0, std::size_t kc) {
    for (std::size_t j = first; j < last; ++j) {
        auto line = reinterpret_cast<std::uintptr_t>(src + j * d + k0) & ~std::uintptr_t(63);
        auto end = reinterpret_cast<std::uintptr_t>(src + j * d + k0 + kc - 1);
        for (; line <= end; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
    }
}

// M queries x 16*V rows.  qp: (kc, M), xp: (kc, 32) 64-byte aligned.
// out[i * out_stride + j] for j < 16*V, masks m0 / m1 select the valid rows of each vector.
// first: start from zero, else add to the stored partial sums.
// prefetch: prefetch_lines cache lines to start loading, one per kPrefetchEvery dimensions.
template <int M, int V>
void micro_kernel(const float* qp, const float* xp, std::size_t kc, float* out,
                  std::size_t out_stride, __mmask16 m0, __mmask16 m1, bool first,
                  const char* prefetch, std::size_t prefetch_lines) {
    __m512 sum_f32x16[M][V];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
        if (first) {
            sum_f32x16[i][0] = _mm512_setzero_ps();
            if (V == 2) sum_f32x16[i][V - 1] = _mm512_setzero_ps();
        } else {
            sum_f32x16[i][0] = _mm512_maskz_loadu_ps(m0, out + i * out_stride);
            if (V == 2) sum_f32x16[i][V - 1] = _mm512_maskz_loadu_ps(m1, out + i * out_stride + 16);
        }
    }
    // One prefetch per kPrefetchEvery dimensions keeps a few lines in flight without
    // filling the miss buffers.
    for (std::size_t t0 = 0; t0 < kc; t0 += kPrefetchEvery) {
        if (prefetch_lines != 0) {
            _mm_prefetch(prefetch, _MM_HINT_T0);
            prefetch += 64;
            --prefetch_lines;
        }
        std::size_t t_end = min_size(kc, t0 + kPrefetchEvery);
        for (std::size_t t = t0; t < t_end; ++t) {
            __m512 rows0 = _mm512_load_ps(xp);
            __m512 rows1 = V == 2 ? _mm512_load_ps(xp + 16) : rows0;
#pragma GCC unroll 16
            for (int i = 0; i < M; ++i) {
                __m512 query = _mm512_set1_ps(qp[i]);
                sum_f32x16[i][0] = _mm512_fmadd_ps(query, rows0, sum_f32x16[i][0]);
                if (V == 2)
                    sum_f32x16[i][V - 1] = _mm512_fmadd_ps(query, rows1, sum_f32x16[i][V - 1]);
            }
            qp += M;
            xp += kNr;
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
        _mm512_mask_storeu_ps(out + i * out_stride, m0, sum_f32x16[i][0]);
        if (V == 2) _mm512_mask_storeu_ps(out + i * out_stride + 16, m1, sum_f32x16[i][V - 1]);
    }
}

// Which lanes of a panel hold rows: 32 rows in two vectors, or up to 16 in one.
struct RowMasks {
    bool two_vectors;
    __mmask16 m0, m1;
};
RowMasks row_masks(std::size_t rows) {
    return {rows > 16, lane_mask(rows), lane_mask(rows > 16 ? rows - 16 : 0)};
}

void pack_query_block(const float* q, std::size_t m, std::size_t d, std::size_t k0,
                      std::size_t kc, float* qp) {
    pack_transposed(q, m, d, k0, kc, qp, m, lane_mask(m));
}

// Runs the micro-kernel for m in [1, kMr] queries and 16 or 32 rows.
void run_micro_kernel(std::size_t m, const RowMasks& masks, const float* qp, const float* xp,
                      std::size_t kc, float* out, std::size_t out_stride, bool first,
                      const char* prefetch, std::size_t prefetch_lines) {
    const bool two_vectors = masks.two_vectors;
    const __mmask16 m0 = masks.m0, m1 = masks.m1;
#define SIMDEX_GEMM_CASE(M)                                                              \
    case M:                                                                              \
        if constexpr (M <= kMr) {                                                        \
            if (two_vectors)                                                             \
                micro_kernel<M, 2>(qp, xp, kc, out, out_stride, m0, m1, first, prefetch, \
                                   prefetch_lines);                                      \
            else                                                                         \
                micro_kernel<M, 1>(qp, xp, kc, out, out_stride, m0, m1, first, prefetch, \
                                   prefetch_lines);                                      \
        }                                                                                \
        break;
    switch (m) {
        SIMDEX_GEMM_CASE(1) SIMDEX_GEMM_CASE(2) SIMDEX_GEMM_CASE(3) SIMDEX_GEMM_CASE(4)
        SIMDEX_GEMM_CASE(5) SIMDEX_GEMM_CASE(6) SIMDEX_GEMM_CASE(7) SIMDEX_GEMM_CASE(8)
        SIMDEX_GEMM_CASE(9) SIMDEX_GEMM_CASE(10) SIMDEX_GEMM_CASE(11) SIMDEX_GEMM_CASE(12)
        SIMDEX_GEMM_CASE(13) SIMDEX_GEMM_CASE(14)
        default: break;
    }
#undef SIMDEX_GEMM_CASE
}

#include "kernels/gemm/packed_rows.inc"
#include "kernels/gemm/ip_block.inc"

constexpr std::uintptr_t kPanelAlignBytes = 64;
#include "kernels/gemm/tile_entry.inc"

}  // namespace

void register_gemm_skylake(KernelTable& t) {
    register_blocked(t);
}

}  // namespace simdex
