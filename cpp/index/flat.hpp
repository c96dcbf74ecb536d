// FlatIndex core: every stored row scanned exactly, rows kept dense in slot order.
//
// State (one object): the rows (n, row_bytes) in one growable buffer, the id <-> slot map,
// the int8 ranges, the kernel table captured at construction. Slots are always 0..n-1:
// remove moves the last row into the freed slot (O(row_bytes), independent of n), so a
// scan never meets a hole and needs no mask unless the user filters.
//
// Not thread-safe by itself: the binding guards it with a reader-writer lock (searches
// share it; add / remove / restore take it alone).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "index/idmap.hpp"
#include "index/scorer.hpp"

namespace simdex {

class FlatCore {
   public:
    FlatCore(const KernelTable& table, const StoreSpec& spec);

    // int8 storage: copies the (dim,) ranges; only while empty.
    void set_ranges(const float* lo, const float* scale);

    // rows: (n, row_bytes); ids: (n,) new unique ids (checked before anything changes), or
    // nullptr = sequential ids written to assigned (n,).
    void add(const std::uint8_t* rows, const std::int64_t* ids, std::int64_t* assigned, std::size_t n);
    // Unknown ids are ignored; returns how many were removed.
    std::size_t remove(const std::int64_t* ids, std::size_t n);

    // queries: (nq, dim) float32 or (nq, row_bytes) codes; out (nq, k) distances, user ids.
    void search(const void* queries, std::size_t nq, std::size_t k, const IdFilter& filter,
                std::size_t threads, float* out_distances, std::int64_t* out_ids) const;

    // Restore rows (n, row_bytes) and their ids (n,) (all live, unique, >= 0).
    void restore(const std::uint8_t* rows, const std::int64_t* ids, std::size_t n, std::int64_t next_id);

    std::size_t size() const { return map_.size(); }
    const IdMap& idmap() const { return map_; }
    const StoreSpec& spec() const { return spec_; }
    const std::uint8_t* rows() const { return rows_.data(); }
    const std::uint8_t* row(std::size_t slot) const { return rows_.data() + slot * spec_.row_bytes; }
    std::size_t nbytes() const { return rows_.capacity() + map_.nbytes() + (lo_.size() + scale_.size()) * 4; }

   private:

    const KernelTable* table_;
    StoreSpec spec_;
    std::vector<float> lo_, scale_;  // int8 ranges (spec_.lo / spec_.scale point here)
    std::vector<std::uint8_t> rows_;
    IdMap map_;
    SlotMaskPool masks_;  // for filtered scans
};

}  // namespace simdex
