// Kernel family 'pq': product-quantization scans, held in KernelTable::pq (see kernels.hpp).
//
// 8-bit ADC (asymmetric distance computation)
//   A query is turned into a float lookup table lut (m, 256): lut[j, c] = partial distance
//   between sub-vector j of the query and centroid c of sub-space j. The distance to a code
//   row is the sum of m table entries; kernels accumulate in float32 and process several
//   rows at once so the loads of independent rows overlap.
//
// 4-bit fast-scan (after André et al., as in FAISS IndexPQFastScan, own layout)
//   Sub-space tables have 16 entries, quantized to uint8 (per-sub-space minimum b_j, one
//   scale s per query), so a whole table fits in a 128-bit lane and lookups are byte
//   shuffles (vpshufb / vpermb-free AVX-512BW shuffle / NEON tbl). Sums are accumulated in
//   uint16 without unpacking bytes: with r the shuffle result seen as uint16 lanes,
//       accumulator_all  += r        (low byte + 256 * high byte, mod 2^16)
//       accumulator_high += r >> 8   (high bytes)
//   and at the end  sum_even = accumulator_all - (accumulator_high << 8),  sum_odd =
//   accumulator_high, exact as long as every true sum is < 65536 (the quantizer makes sure).
//   The float distance is sum * (1 / s) + sum_j b_j.
//
//   m4 = m rounded up to a multiple of 4 (padding sub-spaces have code 0 and a zero table).
//   Codes, layout (nblocks, m4 / 2, 32) uint8: a block holds 32 rows; for pair p (sub-spaces
//   2p and 2p+1) byte t holds the low nibble = code of sub-space 2p, high nibble = code of
//   sub-space 2p+1, of row  t / 2 (t even)  or  16 + t / 2 (t odd).
//   Tables, layout per query (m4 / 4, 128) uint8: for group g (sub-spaces 4g .. 4g+3):
//       [ T(4g) T(4g) | T(4g+2) T(4g+2) | T(4g+1) T(4g+1) | T(4g+3) T(4g+3) ]
//   with T(j) the 16 quantized entries of sub-space j, each repeated for both 128-bit lanes
//   (one 64-byte load gives the low-nibble tables of pairs 2g and 2g+1, the next the high).
//   Compact tables (fastscan_tables_u4), layout per query (m4 / 4, 64) uint8:
//       [ T(4g) | T(4g+2) | T(4g+1) | T(4g+3) ]
//   each table once (kernels broadcast it to their lanes): half the bytes, so the tables of
//   8 queries scanned together (12 kB) stay in L1 beside the streamed codes.
//   Rows whose sum is <= thresholds[query] are reported through `emit` with the 32 sums of
//   the block in row order; the callee may lower thresholds[query] (re-read every block).
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

// Called for a block where at least one row of `query` passed the threshold.
// block: block index relative to the `blocks` pointer given to the scan;
// mask: bit r set = row r of the block passed;  sums: (32,) uint16 in row order.
using FastScanEmit = void (*)(void* context, std::size_t query, std::size_t block,
                              std::uint32_t mask, const std::uint16_t* sums);

struct PqKernels {
    /// Nearest centroid (k-means assignment, PQ encoding) for a tile of centroids.
    /// x:           (n, d) float32 rows multiplied by -2 (the caller scales them once, so
    ///              the kernels broadcast straight from memory)
    /// centroids_t: (d, stride) float32, column c = centroid first_label + c (transposed so
    ///              16 centroids are one vector load); count is a multiple of 16
    /// norms:       (count,) ||c||^2 (0 when x comes as -x: the largest inner product), +inf
    ///              for padding columns
    /// best:        (n,) in/out, ||c||^2 + <x, c> (= ||c||^2 - 2 <x_original, c>) of the best
    ///              centroid so far (start +inf);
    ///              replaced only when strictly smaller, so ties keep the lowest label
    /// labels:      (n,) in/out, label of best
    void (*nearest_f32)(const float* x, std::size_t n, std::size_t d, const float* centroids_t,
                        std::size_t stride, const float* norms, std::size_t count,
                        std::int64_t first_label, float* best, std::int64_t* labels) = nullptr;

    /// lut:   (m, 256) float32, row-major
    /// codes: (n, m) uint8, row-major
    /// out:   (n,) float32, out[i] = sum_j lut[j, codes[i, j]]
    void (*adc_u8)(const float* lut, const std::uint8_t* codes, std::size_t n, std::size_t m,
                   float* out) = nullptr;

    /// blocks:     (nblocks, m4 / 2, 32) uint8 (layout above)
    /// luts:       (nq, m4 / 4, 128) uint8 (layout above)
    /// thresholds: (nq,) uint16, read before every block
    void (*fastscan_u4)(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                        const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                        FastScanEmit emit, void* context) = nullptr;

    /// fastscan_u4 with the queries' tables anywhere in memory: tables[q] points to query
    /// q's compact (m4 / 4, 64) tables (layout above; the same pass, the same emits; callers
    /// scanning one list for a changing set of queries pass pointers, not copies).
    /// Every table entry must be <= 63: a group's four lookups are summed as bytes before
    /// widening (as fastscan1_u4), so sums are exact for m4 * 63 < 65536.
    void (*fastscan_tables_u4)(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                               const std::uint8_t* const* tables, std::size_t nq, std::uint16_t* thresholds,
                               FastScanEmit emit, void* context) = nullptr;

    /// One query, every row's sum, no threshold (graph walks: a node's neighbour block is
    /// scored whole). The four entries a group's lookups add for one row are summed as bytes
    /// before widening, so the caller must make sure every sub-space table entry is <= 63
    /// (four of them fit a byte); sums must also stay < 65536 as above.
    /// blocks: (nblocks, m4 / 2, 32) uint8;  lut: (m4 / 4, 128) uint8 (layouts above)
    /// sums:   (nblocks * 32,) uint16 out, row order
    void (*fastscan1_u4)(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                         const std::uint8_t* lut, std::uint16_t* sums) = nullptr;
};

}  // namespace simdex
