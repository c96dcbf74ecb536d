// RaBitQIndex / IVFRaBitQIndex core: RaBitQ codes in inverted lists (one list = the flat
// index), scanned with the 4-bit fast-scan kernels, refined with the extra bits, optionally
// re-ranked exactly with lower-bound pruning.
//
// State (one object): the quantizer (rotation, bits), nlist centroids and their rotations,
// per list: the slots it holds and their codes in list order, the IdMap, the slot -> (list,
// position) map, and the exact re-rank rows by slot when the index keeps them (a RerankRows
// shared with Python's RerankStore, which saves it). Slots are IdMap slots: free slots are
// reused by later adds, and add writes a row's codes and its re-rank row as one step.
//
// List layout (n rows in list order, nblocks = ceil(n / 32)):
//   blocks  (nblocks, D / 8, 32) uint8: the sign planes in the fast-scan layout of
//           kernels/pq/pq.hpp with m4 = D / 4 sub-spaces of 4 dimensions (a nibble = the 4
//           sign bits of sub-space j, bit t = dimension 4j + t): byte (p, t) of a block is
//           byte p of the sign plane of row (t even ? t / 2 : 16 + t / 2)
//   factors (nblocks, FI, 32) float32: factor f of the block's 32 rows side by side: the
//           quantizer's F factors, then (IVF only: flat has g = c, the shifts are 0 and not
//           stored) the shifts <xbar, R(c - g)> of the 1-bit level and (B > 1) of the full
//           level (c: the list's centroid, g: the centroids' mean; derived from the row and
//           the centroids, not stored in files), then for ip the row's <r, c> = <x - c, c>
//           (exact, from the float row at add; stored in files: format version 2)
//   ex      (n, (B - 1) * D / 8) uint8: the extra bit planes (B > 1)
//
// Search for one query: rotate once, v = R(q - g), and build the 16-entry tables of the sign
// sub-spaces, quantised to uint8, and the query bit planes, once for every list; per probed
// list only the constant changes, and each row subtracts its shift:
// <xbar, R(q - c)> = <xbar, v> - <xbar, R(c - g)> (the residual form: the estimator's error
// scales with ||q - c|| instead of ||q||, as FAISS centres the query):
//   l2     = ||r||^2 + ||q - c||^2 - 2 <r, q - c>       (||q - c||^2 from the coarse GEMM on
//                                                       centred vectors; cosine = l2 / 2)
//   ip     = 1 - <x, q> = 1 - <c, q> - <r, c> - <r, q - c>    (x = c + r, so <r, q> =
//            <r, c> + <r, q - c>: the query-independent <r, c> is exact, stored per row;
//            only <r, q - c> is estimated)
// with <r, q - c> ~= scale (<xbar, v> - shift) at either level;
// the fast-scan kernel sums the tables for 32 rows at a time; each row gets the 1-bit
// estimate and its bound; rows whose lower bound (estimate - eps0 * error) is below the
// current c-th best full estimate (c = rerank_k, or k) get the full B-bit estimate
// (popcounts over the extra planes) and enter the selection. With re-rank rows, the c
// candidates are visited in ascending estimate and re-scored exactly unless their lower bound
// already reaches the current k-th exact distance (those are counted as pruned).
//
// Batches (IVF, >= 8 queries, no per-query filter lists): chunks of 64 queries; each query
// scans its 2 nearest lists alone, then the chunk's remaining (list, query) pairs are sorted
// by list and every list is scanned once per group of up to 4 of its queries (one kernel
// pass: the codes are loaded and split into nibbles once for the group). The 1-bit
// selections do not depend on the order (tested against one query per call).
//
// Not thread-safe by itself: the binding guards it with a reader-writer lock (the core's lock
// first, then the re-rank rows' own lock).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "index/exact.hpp"
#include "index/idmap.hpp"
#include "index/rabitq.hpp"
#include "index/rerank.hpp"
#include "index/scorer.hpp"

namespace simdex {

// Counters of one search call (summed over queries).
struct RaBitQStats {
    std::uint64_t scanned = 0;        // rows whose 1-bit estimate was computed
    std::uint64_t refined = 0;        // rows that got the full B-bit estimate
    std::uint64_t candidates = 0;     // candidates handed to the re-rank
    std::uint64_t reranked = 0;       // candidates re-scored exactly
    std::uint64_t pruned = 0;         // candidates skipped by their lower bound
};

// Exact rows for the re-rank: (n, spec.row_bytes) by slot.
struct RerankSource {
    const std::uint8_t* data = nullptr;
    std::size_t n = 0;
    StoreSpec spec;
};

class RaBitQIndexCore {
   public:
    // nlist lists (1: the flat index); rerank: the exact rows by slot, or null.
    RaBitQIndexCore(const KernelTable& table, const RaBitQ& quantizer, Metric metric, std::size_t nlist,
                    std::shared_ptr<RerankRows> rerank);

    // centroids: (nlist, dim) float32 (nlist = 1: the flat index's centre).

    void set_centroids(const float* centroids);
    bool trained() const { return trained_; }

    // Encode x (n, dim) float32 (unit rows for cosine) against the centroids of their lists
    // (n,) in [0, nlist) into rows (n, quantizer().row_bytes()) and, for ip, dots (n,) =
    // <x - c, c> (centre_dots; nullptr for l2 / cosine); reads only trained state.
    void encode_rows(const float* x, const std::int64_t* lists, std::size_t n, std::size_t threads,
                     std::uint8_t* rows, float* dots) const;
    // The exact per-row scalar of ip: out (n,) = <x - c, c> for x (n, dim), c = the centroid of
    // lists (n,) (x - c rounded to float32 as the encoder rounds it, then summed in double).
    void centre_dots(const float* x, const std::int64_t* lists, std::size_t n, float* out) const;
    // Whether rows carry a centre dot (ip): insert / restore / export_rows take dots.
    bool has_dots() const { return metric_ == Metric::ip; }
    // Add x (n, dim) float32 (as encoded) with its encoded rows and dots (n,) their centre dots
    // (ip; ignored otherwise); ids (n,) new unique ids or nullptr (sequential ids written to
    // assigned); slots_out (n,) the slots given to the rows (reused free slots first). The
    // re-rank rows of x are written first, the one step that can fail (full disk, read-only
    // file): then the index is left as before (ids, slots, next id), the error rethrown.
    void add(const float* x, const std::uint8_t* rows, const float* dots, const std::int64_t* lists,
             const std::int64_t* ids, std::int64_t* assigned, std::int64_t* slots_out, std::size_t n);
    // Unknown ids are ignored; returns how many were removed.
    std::size_t remove(const std::int64_t* ids, std::size_t n);

    // queries (nq, dim) float32; out (nq, k) distances and user ids.
    // candidates: size of the selection before the re-rank (>= k) by the owned rows, if any
    // (read under their lock).
    void search(const float* queries, std::size_t nq, std::size_t k, std::size_t nprobe,
                std::size_t candidates, float eps0, const IdFilter& filter, std::size_t threads,
                float* out_distances, std::int64_t* out_ids, RaBitQStats& stats) const;

    // Canonical rows (quantizer row layout: planes + factors) of every live row, list by list,
    // with their list and slot, and (ip, else nullptr) their centre dots; ids per slot (-1 =
    // free) come from idmap().
    void export_rows(std::uint8_t* rows, std::int64_t* lists, std::int64_t* slots, float* dots) const;
    // Restore: ids per slot (-1 = free; the re-rank rows, if kept, hold one row per slot),
    // then live rows with their list, slot and (ip) centre dot. ip rows without dots (nullptr: files of format version 1, written when ip was
    // estimated uncentred) get their code's own estimate of <r, c>, scale <xbar, R c> at the
    // full level: their full-level estimate is then exactly the version-1 (uncentred) one,
    // 1 - <c, q> - scale <xbar, R q>, up to the query's rounding.
    void restore(const std::int64_t* ids, std::size_t slot_count, std::int64_t next_id, const std::uint8_t* rows,
                 const float* dots, const std::int64_t* lists, const std::int64_t* slots, std::size_t n);

    std::size_t size() const { return map_.size(); }
    const IdMap& idmap() const { return map_; }
    const RaBitQ& quantizer() const { return q_; }
    std::size_t nlist() const { return lists_.size(); }
    std::size_t nbytes() const;
    // Row of a live slot in the quantizer's layout, and its decoded vector (dim,).
    void row_of(std::size_t slot, std::uint8_t* out) const;
    void decode_row(std::size_t slot, const std::uint8_t* row, float* out) const {
        q_.decode(*table_, row, centroids_.data() + list_of_[slot] * q_.dim(), out);
    }
    Metric metric() const { return metric_; }
    const RerankRows* rerank() const { return rerank_.get(); }

   private:
    struct List {
        std::vector<std::uint32_t> slots;
        std::vector<std::uint8_t> blocks;
        std::vector<float> factors;
        std::vector<std::uint8_t> ex;
        // factor ranges over every row ever put here (they only widen): the scan's
        // block-skipping threshold must hold for every row of the list
        float g_min = INFINITY, scale1_min = INFINITY, scale1_max = 0, error1_max = 0;
        std::size_t size() const { return slots.size(); }
    };
    // row: quantizer layout; dot: its centre dot (ip)
    void put(std::size_t list, std::size_t pos, const std::uint8_t* row, float dot);
    void copy_position(std::size_t list, std::size_t from, std::size_t to);
    // l2 / cosine: the l2 form ||r||^2 + ||q - c||^2 - 2 <r, q - c> (cosine halves it)
    bool l2_form() const { return metric_ != Metric::ip; }
    // the rows the coarse GEMM scores queries against: c - g (l2 form), c (ip)
    const float* coarse_rows() const { return l2_form() ? centred_centroids_.data() : centroids_.data(); }
    // factors per row in a block: the quantizer's, then <xbar, R(c - g)> of the 1-bit level
    // and (B > 1) of the full level with several lists (one list: g = c, the shifts are 0 and
    // not stored), then (ip) <r, c>
    std::size_t shift_count() const { return lists_.size() > 1 ? (q_.bits() > 1 ? 2 : 1) : 0; }
    std::size_t dot_factor() const { return q_.factor_count() + shift_count(); }
    std::size_t block_factors() const { return dot_factor() + (has_dots() ? 1 : 0); }
    void grow(List& list, std::size_t rows);
    // search with the re-rank rows' view (null: none), taken under their lock by search
    void scan(const float* queries, std::size_t nq, std::size_t k, std::size_t nprobe, std::size_t candidates,
              float eps0, const IdFilter& filter, const RerankSource* rerank, std::size_t threads,
              float* out_distances, std::int64_t* out_ids, RaBitQStats& stats) const;

    const KernelTable* table_;
    RaBitQ q_;
    Metric metric_;
    bool trained_ = false;
    std::vector<float> centroids_;          // (nlist, dim)
    std::vector<double> rotated_centroids_; // (nlist, D)
    std::vector<float> centre_;                    // g (dim,): the centroids' mean
    std::vector<double> rotated_centre_;           // R g (D,)
    std::vector<float> centred_centroids_;         // (nlist, dim) c - g
    std::vector<double> centred_norms_;            // (nlist,) ||c - g||^2
    std::vector<double> centre_dots_;              // (nlist,) <g, c> - ||g||^2 (cosine probes)
    std::vector<double> inverse_norms_;            // (nlist,) 1 / ||c|| (0 for c = 0)
    // coarse_rows() packed for table_'s GEMM tiles (set with them): a search of one query
    // does not repack the nlist rows
    PackedRows packed_coarse_;
    std::vector<List> lists_;
    std::vector<std::uint32_t> list_of_, pos_of_;  // by slot
    IdMap map_;
    SlotMaskPool masks_;  // for filtered scans
    std::shared_ptr<RerankRows> rerank_;  // exact rows by slot, or null
};

}  // namespace simdex
