// Exact search over a contiguous block of stored rows: top-k (fused into the scan) and
// pairwise distance matrices. Results are slot numbers (row positions); callers map
// them to user ids.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "index/scorer.hpp"

namespace simdex {

// data:    (n, spec.row_bytes) rows
// queries: (nq, dim) float32, or (nq, row_bytes) uint8 codes for bits storage
// mask:    (n,) uint8, nonzero = allowed; nullptr = all allowed
// out:     distances (nq, k) float32 ascending, slots (nq, k) int64, padded (+inf, -1)
void exact_search(const KernelTable& table, const StoreSpec& spec, const std::uint8_t* data,
                  std::size_t n, const void* queries, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, float* out_distances,
                  std::int64_t* out_slots);

// Plain float32 matrix product through the GEMM tiles: out (nq, n), out[i, j] = <q_i, row_j>
// (rows (n, dim), queries (nq, dim), row-major). Used for LeanVec projections.
void inner_products(const KernelTable& table, const float* rows, std::size_t n,
                    const float* queries, std::size_t nq, std::size_t dim, std::size_t threads,
                    float* out);

// Rows (n, dim) float32 packed once in the form a kernel table's GEMM tiles read them, for
// callers that score few queries per call against the same rows (IVF centroids): the
// inner_products overload below then skips packing them on every call. The packed form is
// the packing table's own; it is empty (nothing to pack) for tiers whose tiles read rows as
// they are (scalar). A copy repacks nothing (it copies the buffer).
class PackedRows {
   public:
    PackedRows() = default;
    PackedRows(const KernelTable& table, const float* rows, std::size_t n, std::size_t dim);
    PackedRows(const PackedRows& other);
    PackedRows& operator=(const PackedRows& other);
    PackedRows(PackedRows&&) noexcept = default;
    PackedRows& operator=(PackedRows&&) noexcept = default;

    // The packed rows if `table` reads this form (same tier) for rows (n, dim), else nullptr.
    const float* for_table(const KernelTable& table, std::size_t n, std::size_t dim) const;
    std::size_t nbytes() const { return floats_ * sizeof(float); }

   private:
    struct Free {
        void operator()(float* p) const;
    };
    void allocate(std::size_t floats);
    decltype(KernelTable::gemm_pack_rows) pack_ = nullptr;  // the tier that packed (null: none)
    std::size_t n_ = 0, dim_ = 0, floats_ = 0;
    std::unique_ptr<float[], Free> buffer_;
};

// inner_products of rows (n, dim) with their packed form: the same floats as without it; the
// rows are read instead when `packed` is another tier's (or another shape's) form.
void inner_products(const KernelTable& table, const PackedRows& packed, const float* rows,
                    std::size_t n, const float* queries, std::size_t nq, std::size_t dim,
                    std::size_t threads, float* out);

// out: (nq, n) float32, out[i, j] = distance(query i, row j)
void pairwise_distances(const KernelTable& table, const StoreSpec& spec,
                        const std::uint8_t* data, std::size_t n, const void* queries,
                        std::size_t nq, std::size_t threads, float* out);

}  // namespace simdex

namespace simdex {

// Exact re-scoring of candidate rows: for each query, score the candidate slots (-1 =
// none; out-of-range slots are rejected by the caller) and keep the k best.
//   candidates: (nq, c) int64;  out: distances (nq, k) float32 ascending, slots (nq, k) int64
void rerank_candidates(const KernelTable& table, const StoreSpec& spec, const std::uint8_t* data,
                       const void* queries, std::size_t nq, const std::int64_t* candidates,
                       std::size_t c, std::size_t k, std::size_t threads, float* out_distances,
                       std::int64_t* out_slots);

}  // namespace simdex
