// Product-quantization search: flat 8-bit ADC, flat 4-bit fast-scan, and IVF over either.
// The scans come from the kernel table (kernels/pq); this file adds threads, top-k, filters
// and the uint8 quantization of fast-scan tables. Results are slots (row positions).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"

namespace simdex {

// m4: sub-spaces rounded up to a multiple of 4 (fast-scan layout, kernels/pq/pq.hpp).
inline std::size_t fastscan_m4(std::size_t m) { return (m + 3) / 4 * 4; }

// Write row r (0..31) of a 4-bit fast-scan block: codes (m,) < 16 into block
// (m4 / 2, 32) uint8. Row r sits at byte t of each sub-space pair: t = 2r (r < 16) or
// 2(r - 16) + 1, low nibble = even sub-space (kernels/pq/pq.hpp). The one writer of the
// layout (PqCore, IvfStore).
inline void write_block_row(std::uint8_t* block, std::size_t r, const std::uint8_t* codes, std::size_t m) {
    const std::size_t half = fastscan_m4(m) / 2, t = r < 16 ? 2 * r : 2 * (r - 16) + 1;
    for (std::size_t p = 0; p < half; ++p) {
        const unsigned lo = 2 * p < m ? codes[2 * p] & 15u : 0u;
        const unsigned hi = 2 * p + 1 < m ? codes[2 * p + 1] & 15u : 0u;
        block[p * 32 + t] = static_cast<std::uint8_t>(lo | (hi << 4));
    }
}

// Quantize one query's float tables (m, 16) to the fast-scan layout (m4 / 4, 128) uint8.
// Returns scale s and bias b: distance ~= sum_j q_lut[j, c_j] / s + b, with
// |approx - exact| <= m * 0.5 / s; every entry is <= 255 and every sum <= 65535.
void quantize_fastscan_lut(const float* lut, std::size_t m, std::uint8_t* out, float* scale,
                           float* bias);

// The codebooks in the layouts the table builder reads: books (m, ksub, dsub),
// books_t (m, dsub, ksub) (centroids contiguous per coordinate), norms (m, ksub) = ||C_jc||^2.
struct PqBooks {
    const float* books = nullptr;
    const float* books_t = nullptr;
    const float* norms = nullptr;
    std::size_t m = 0, ksub = 0, dsub = 0;
};

// Float lookup tables of nq queries (already rotated): out (nq, m, ksub). l2:
// ||q_j - C_jc||^2 (clamped at 0); otherwise -<q_j, C_jc>, with +1 added on sub-space 0 so
// that a row's table sum is 1 - <q, x>. A loop over the centroids that the compiler
// vectorises (per-sub-space GEMM tiles cost more at dsub = 4..16: measured with callgrind).
void pq_tables(const PqBooks& books, const float* queries, std::size_t nq, bool l2, std::size_t threads,
               float* out);

struct PqSearchOutput {
    float* distances;     // (nq, k) ascending, +inf padded
    std::int64_t* slots;  // (nq, k), -1 padded
};

// codes: (n, m) uint8;  luts: (nq, m, 256) float32;  mask: (n,) uint8 or nullptr
void pq_search_u8(const KernelTable& table, const std::uint8_t* codes, std::size_t n,
                  std::size_t m, const float* luts, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, PqSearchOutput out);

// blocks: (ceil(n / 32), m4 / 2, 32) uint8;  luts: (nq, m, 16) float32
void pq_search_u4(const KernelTable& table, const std::uint8_t* blocks, std::size_t n,
                  std::size_t m, const float* luts, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, PqSearchOutput out);

// IVF. List l holds units[l] rows (nbits = 8: codes (rows, m) uint8) or blocks (nbits = 4:
// codes (blocks, m4 / 2, 32) uint8, 32 entries per block) at codes[l], and the slot of every
// row or block entry at slots[l] (-1 for block padding).
// Tables per (query, probed list): base_luts[q] (m, ksub) + list_tables[l] (m, ksub) if
// list_tables is not null, plus the scalar probe_bias[q, p].
struct IvfLists {
    int nbits = 8;
    std::size_t m = 0;
    std::size_t nlist = 0;
    std::vector<const std::uint8_t*> codes;   // (nlist,)
    std::vector<const std::int64_t*> slots;   // (nlist,)
    std::vector<std::size_t> units;           // (nlist,)
    const float* list_tables = nullptr;       // (nlist, m, ksub) or nullptr
};

void ivf_search(const KernelTable& table, const IvfLists& lists, const float* base_luts,
                const std::int64_t* probes, const float* probe_bias, std::size_t nq,
                std::size_t nprobe, std::size_t k, const std::uint8_t* mask,
                std::size_t slot_count, std::size_t threads, PqSearchOutput out);

// The inverted lists of an IVF-PQ index, each growing on its own: appending a row costs
// O(m) whatever the index size (4-bit rows are written into the last block of their list).
class IvfStore {
   public:
    IvfStore(int nbits, std::size_t m, std::size_t nlist);
    // lists (n,) in [0, nlist); codes (n, m) uint8 (< 16 for nbits = 4); slots (n,).
    void append(const std::int64_t* lists, const std::uint8_t* codes, const std::int64_t* slots,
                std::size_t n);
    // A view of the lists for ivf_search (list_tables left null).
    IvfLists view() const;
    // Contiguous form (the file format): offsets (nlist + 1,) in units, codes of all units,
    // entry slots of all rows / block entries.
    std::size_t units() const;
    std::size_t entries() const;
    std::size_t unit_bytes() const { return nbits_ == 8 ? m_ : fastscan_m4(m_) * 16; }
    void flatten(std::uint8_t* codes, std::int64_t* entry_slots, std::int64_t* offsets) const;
    // Validates every offset and slot (< slot_count; -1 only as 4-bit padding) before use.
    void restore(const std::uint8_t* codes, const std::int64_t* entry_slots,
                 const std::int64_t* offsets, std::size_t slot_count);
    std::size_t nbytes() const;

   private:
    struct List {
        std::vector<std::uint8_t> codes;
        std::vector<std::int64_t> slots;  // per row / block entry
        std::size_t rows = 0;
    };
    int nbits_;
    std::size_t m_, nlist_;
    std::vector<List> lists_;
};

// Nearest centroid of every row of x (n, d) among centroids (k, d), both float32:
// labels (n,) int64 and squared distances (n,) float32 (expanded form, clamped at 0); with
// inner_product the centroid of largest <x, c> instead, distances = -<x, c>. Ties: lowest label.
// Centroids are transposed and cut in tiles that stay in L2; rows go to threads in chunks.
void nearest_centroids(const KernelTable& table, const float* x, std::size_t n, std::size_t d,
                       const float* centroids, std::size_t k, std::size_t threads,
                       std::int64_t* labels, float* distances, bool inner_product = false);

// k-means helper: per-cluster sums (k, d) float64 and counts (k,) of rows x (n, d).
void cluster_sums(const float* x, std::size_t n, std::size_t d, const std::int64_t* labels,
                  std::size_t k, double* sums, std::int64_t* counts);

}  // namespace simdex
