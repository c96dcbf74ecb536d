// What composite index cores (LeanVecCore) take from a simdex._core.HnswGraph object: its
// graph and lock, and the one insert procedure every graph add goes through.
#pragma once
#include <cstddef>
#include <cstdint>

#include "bindings_common.hpp"
#include "index/hnsw.hpp"

namespace simdex {

struct HnswParts {
    HnswGraph* graph;
    RwLock* lock;  // the handle's lock: shared for searches / inserts / removes, alone for growth
};
// The parts of a simdex._core.HnswGraph object (the caller keeps the object alive).
HnswParts hnsw_parts(const py::object& handle);

// Inserts n encoded rows (ids: new unique ids, or nullptr = sequential into assigned) in the
// three steps of HnswGraph (begin_add alone, insert_nodes shared, end_add alone after an
// interrupt, which is rethrown). Call without the GIL.
void hnsw_insert(HnswParts g, const std::uint8_t* rows, const std::int64_t* ids, std::int64_t* assigned,
                 const std::int64_t* order, std::size_t n, std::size_t threads);

// Tombstones the graph's ids (unknown ones ignored) under the shared lock, beside searches
// and inserts, then compacts alone when due; returns how many were removed. Call without
// the GIL.
std::size_t hnsw_remove(HnswParts g, const std::int64_t* ids, std::size_t n, std::size_t threads);

}  // namespace simdex
