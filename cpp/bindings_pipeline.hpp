// The last stages that every compressed search shares, in C++: candidate slots (from a
// graph, a PQ scan, an IVF scan or a code scan) are re-scored exactly against the re-rank
// store's rows when the index has one, the k best kept, and slots mapped to user ids.
#pragma once
#include <algorithm>
#include <string>

#include "bindings_common.hpp"
#include "bindings_ids.hpp"
#include "index/exact.hpp"

namespace simdex {

// The re-rank store's rows as Python hands them over (RerankStore.scoring()): rows None
// means no store.
struct StoreRows {
    const std::uint8_t* data = nullptr;
    std::size_t n = 0;
    StoreSpec spec;
    bool active = false;
};

inline StoreRows store_rows(const py::object& rows, std::size_t n_rows, const std::string& storage,
                            const std::string& metric, std::size_t dim, const py::object& lo,
                            const py::object& scale) {
    StoreRows s;
    if (rows.is_none()) return s;
    s.spec = make_spec(storage, metric, dim, lo, scale);
    py::array a = rows.cast<py::array>();
    s.data = array_bytes(a, n_rows * s.spec.row_bytes, a.itemsize(), "rerank rows");
    s.n = n_rows;
    s.active = true;
    return s;
}

// candidates: (nq, c) slots (-1 = none) with their compressed distances; queries: float32
// (nq, store dim) as the store expects them. Writes (nq, k) distances and user ids.
inline void finish_candidates(const KernelTable& kernels, const StoreRows& store, const float* queries,
                              std::size_t nq, const float* cand_d, const std::int64_t* cand,
                              std::size_t c, std::size_t k, std::size_t threads, IdTable& table,
                              float* out_d, std::int64_t* out_ids) {
    if (store.active) {
        for (std::size_t i = 0; i < nq * c; ++i)
            if (cand[i] >= static_cast<std::int64_t>(store.n))
                throw std::invalid_argument("candidate slot " + std::to_string(cand[i]) +
                                            " has no row in the re-rank store of " + std::to_string(store.n));
        rerank_candidates(kernels, store.spec, store.data, queries, nq, cand, c, k, threads, out_d, out_ids);
    } else {
        for (std::size_t i = 0; i < nq; ++i) {  // candidates are sorted: the first k
            std::copy(cand_d + i * c, cand_d + i * c + std::min(c, k), out_d + i * k);
            std::copy(cand + i * c, cand + i * c + std::min(c, k), out_ids + i * k);
            std::fill(out_d + i * k + std::min(c, k), out_d + (i + 1) * k, std::numeric_limits<float>::infinity());
            std::fill(out_ids + i * k + std::min(c, k), out_ids + (i + 1) * k, -1);
        }
    }
    table.map_slots(out_ids, nq * k);
}

}  // namespace simdex
