// GEMM-style inner products, aarch64 NEON: out[i, j] = <q_i, x_j> for a tile of queries and rows.
//
// Same blocking as the x86 files (see gemm/skylake.cpp), with 4 lanes and 32 registers:
//   for each block of at most kKc dimensions (d split into equal blocks):
//     for each row panel of 12 rows, packed (kc, 12): panel[t][r] = x[j0 + r, k0 + t]
//       for each block of 8 queries, packed (kc, 8) during the first sweep (missing
//       queries are zero lanes):
//         micro-kernel: 8 x 12 outputs in 24 accumulators; per dimension 3 row vectors and
//         2 query vectors are loaded, and fmla-by-lane broadcasts each query value.
// Packing is a scalar loop (tails included); output tails are stored through a small
// buffer. Each output accumulates its terms in dimension order in one float32 lane;
// blocks after the first start from the stored partial sum.
#include <arm_neon.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

constexpr std::size_t kMr = 8;       // queries per micro-tile: 2 vectors, lanes broadcast
constexpr std::size_t kNr = 12;      // rows per micro-tile: 3 vectors of 4 float32 lanes
constexpr std::size_t kKc = 512;     // dimensions per cache block
constexpr std::size_t kTileQ = 256;  // queries per call (the caller's tile)
constexpr std::size_t kTileN = 480;  // rows per call (the caller's tile), 40 * kNr
constexpr std::size_t kAlign = 4;    // floats: panels start on 16-byte boundaries

std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

// src rows [0, rows) x dims [k0, k0 + kc) (row stride d) -> dst[t * lanes + r] for r < lanes,
// rows >= `rows` zero.
void pack_transposed(const float* src, std::size_t rows, std::size_t d, std::size_t k0,
                     std::size_t kc, float* dst, std::size_t lanes) {
    for (std::size_t r = 0; r < lanes; ++r) {
        if (r < rows) {
            const float* row = src + r * d + k0;
            for (std::size_t t = 0; t < kc; ++t) dst[t * lanes + r] = row[t];
        } else {
            for (std::size_t t = 0; t < kc; ++t) dst[t * lanes + r] = 0.0f;
        }
    }
}

// Rows [j0, j0 + 12) of x (n, d), dims [k0, k0 + kc) -> panel (kc, 12), rows >= n zero.
void pack_row_panel(const float* x, std::size_t n, std::size_t d, std::size_t k0,
                    std::size_t kc, std::size_t j0, float* panel) {
    pack_transposed(x + j0 * d, j0 < n ? min_size(kNr, n - j0) : 0, d, k0, kc, panel, kNr);
}

#include "kernels/gemm/packed_rows.inc"

// 8 queries x 12 rows.  qp: (kc, 8), xp: (kc, 12).
// Writes rows [0, m) and columns [0, cols) of out (row stride out_stride).
// first: start from zero, else add to the stored partial sums.
void micro_kernel(const float* qp, const float* xp, std::size_t kc, float* out,
                  std::size_t out_stride, std::size_t m, std::size_t cols, bool first) {
    float32x4_t sum_f32x4[kMr][3];
    for (int i = 0; i < 8; ++i)
        for (int v = 0; v < 3; ++v) sum_f32x4[i][v] = vdupq_n_f32(0.0f);
    for (std::size_t t = 0; t < kc; ++t) {
        float32x4_t rows0 = vld1q_f32(xp), rows1 = vld1q_f32(xp + 4), rows2 = vld1q_f32(xp + 8);
        float32x4_t q_lo = vld1q_f32(qp), q_hi = vld1q_f32(qp + 4);
#define SIMDEX_GEMM_FMA(I, Q, LANE)                                               \
    sum_f32x4[I][0] = vfmaq_laneq_f32(sum_f32x4[I][0], rows0, Q, LANE);           \
    sum_f32x4[I][1] = vfmaq_laneq_f32(sum_f32x4[I][1], rows1, Q, LANE);           \
    sum_f32x4[I][2] = vfmaq_laneq_f32(sum_f32x4[I][2], rows2, Q, LANE);
        SIMDEX_GEMM_FMA(0, q_lo, 0) SIMDEX_GEMM_FMA(1, q_lo, 1)
        SIMDEX_GEMM_FMA(2, q_lo, 2) SIMDEX_GEMM_FMA(3, q_lo, 3)
        SIMDEX_GEMM_FMA(4, q_hi, 0) SIMDEX_GEMM_FMA(5, q_hi, 1)
        SIMDEX_GEMM_FMA(6, q_hi, 2) SIMDEX_GEMM_FMA(7, q_hi, 3)
#undef SIMDEX_GEMM_FMA
        qp += kMr;
        xp += kNr;
    }
    for (std::size_t i = 0; i < m; ++i) {
        float* dst = out + i * out_stride;
        if (cols == kNr) {
            for (int v = 0; v < 3; ++v) {
                float32x4_t sum = sum_f32x4[i][v];
                if (!first) sum = vaddq_f32(vld1q_f32(dst + 4 * v), sum);
                vst1q_f32(dst + 4 * v, sum);
            }
        } else {
            float buffer[kNr];
            for (int v = 0; v < 3; ++v) vst1q_f32(buffer + 4 * v, sum_f32x4[i][v]);
            for (std::size_t j = 0; j < cols; ++j) dst[j] = first ? buffer[j] : dst[j] + buffer[j];
        }
    }
}

// One block of <= kTileQ queries x <= kTileN rows.
//   packed:     the block's rows packed (packed_rows.inc layout), or nullptr: then each row
//               panel is packed from x into row_panel (x is not read otherwise)
//   row_panel:  (kc, 12), the current row panel
//   query_pack: per block b of 8 queries a (kc, 8) panel at query_pack + b * 8 * kc
void ip_block(const float* queries, std::size_t nq, const float* x, const float* packed,
              std::size_t n, std::size_t d, float* out, std::size_t out_stride, float* row_panel,
              float* query_pack) {
    std::size_t kc_max = block_dims(d);
    std::size_t panels = (n + kNr - 1) / kNr, query_blocks = (nq + kMr - 1) / kMr;
    for (std::size_t k0 = 0; k0 < d; k0 += kc_max) {
        std::size_t kc = min_size(kc_max, d - k0);
        bool first = k0 == 0;
        for (std::size_t p = 0; p < panels; ++p) {
            std::size_t j0 = p * kNr, cols = min_size(kNr, n - j0);
            const float* panel = row_panel;
            if (packed != nullptr)
                panel = packed + packed_panel_offset(panels, k0, kc, p);
            else
                pack_row_panel(x, n, d, k0, kc, j0, row_panel);
            for (std::size_t b = 0; b < query_blocks; ++b) {
                std::size_t i0 = b * kMr, m = min_size(kMr, nq - i0);
                float* qp = query_pack + i0 * kc;
                if (p == 0) pack_transposed(queries + i0 * d, m, d, k0, kc, qp, kMr);
                micro_kernel(qp, panel, kc, out + i0 * out_stride + j0, out_stride, m, cols,
                             first);
            }
        }
    }
}

std::size_t scratch_floats(std::size_t nq, std::size_t n, std::size_t d) {
    std::size_t kc = min_size(d, kKc);
    std::size_t query_rows = (min_size(nq, kTileQ) + kMr - 1) / kMr * kMr;
    return kNr * kc + query_rows * kc + kAlign;
}

constexpr std::uintptr_t kPanelAlignBytes = 16;
#include "kernels/gemm/tile_entry.inc"

}  // namespace

void register_gemm_neon(KernelTable& t) {
    register_blocked(t);
}

}  // namespace simdex
