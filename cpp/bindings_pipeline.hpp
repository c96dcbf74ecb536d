// The last stages that every compressed search shares, in C++: candidate slots (from a
// graph, a PQ scan, an IVF scan or a code scan) are re-scored exactly against the re-rank
// rows (RerankRows) when the index has them, the k best kept, and slots mapped to user ids.
#pragma once
#include <algorithm>
#include <string>

#include "bindings_common.hpp"
#include "bindings_ids.hpp"
#include "index/exact.hpp"
#include "index/rerank.hpp"

namespace simdex {

// The re-rank rows a call was given: None (no re-rank stage) or a RerankRows
// (bindings_rerank.cpp).
inline const RerankRows* rerank_arg(const py::object& rows) {
    if (rows.is_none()) return nullptr;
    return rows.cast<RerankRows*>();
}

// candidates: (nq, c) slots (-1 = none) with their compressed distances; queries: float32
// (nq, store dim) as the store expects them. Writes (nq, k) distances and user ids.
inline void finish_candidates(const RerankRows* store, const float* queries,
                              std::size_t nq, const float* cand_d, const std::int64_t* cand,
                              std::size_t c, std::size_t k, std::size_t threads, IdTable& table,
                              float* out_d, std::int64_t* out_ids) {
    keep_candidates(store, queries, nq, cand_d, cand, c, k, threads, out_d, out_ids);
    table.map_slots(out_ids, nq * k);
}

}  // namespace simdex
