// Exact search over a contiguous block of stored rows: top-k (fused into the scan) and
// pairwise distance matrices. Results are slot numbers (row positions); callers map
// them to user ids.
#pragma once
#include <cstddef>
#include <cstdint>

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
