// The re-rank rows of a compressed index: full vectors by slot, for exact re-scoring of the
// candidates a code scan or a graph walk proposes, and for reconstruct().
//
// State (one object): float32, float16 or int8 rows (int8: per-dimension ranges lo, scale,
// copied in) either in RAM (one growable buffer, advised as huge pages once large) or in a
// file that this object grows and memory-maps (MAP_SHARED; read-only files map read-only and
// still search). Rows are written with pwrite, so a failed write (full disk) surfaces as an
// error, never as a signal, and the store is left as before it. Scoring goes through the one
// Scorer (rerank_candidates) with the kernel table captured at construction.
//
// Thread-safe on its own: put / restore take the internal lock alone, every reader shares it.
// Index cores that own a RerankRows call it under their own lock as well (core lock first).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "index/idmap.hpp"
#include "index/memory.hpp"
#include "index/scorer.hpp"
#include "rwlock.hpp"

namespace simdex {

// CRC-32 (zlib's polynomial, as Python's zlib.crc32) of n bytes, continuing from crc.
std::uint32_t crc32_bytes(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0);

// float32 -> IEEE half, rounding to nearest even (as NumPy's astype(float16)).
std::uint16_t float_to_half(float f);

// float32 rows x (n, spec.dim) -> stored rows (n, spec.row_bytes) of f32 / f16 / u8 storage
// (u8: code = clip(rint((x - lo) / scale), 0, 255), as _storage.encode). Throws
// std::invalid_argument for values a float16 cannot hold.
void encode_rows(const StoreSpec& spec, const float* x, std::size_t n, std::uint8_t* out);

class RerankRows {
   public:
    // storage: f32, f16 or u8 (lo, scale: (dim,) ranges, u8 only); metric: l2, ip, cosine.
    RerankRows(const KernelTable& table, Storage storage, Metric metric, std::size_t dim, const float* lo,
               const float* scale);
    ~RerankRows();
    RerankRows(const RerankRows&) = delete;
    RerankRows& operator=(const RerankRows&) = delete;

    // Keep the rows in a file from now on: create (or empty) `path`. Only while empty.
    void create_file(const std::string& path);
    // Open the file of a saved store holding n rows (its size must match); maps it read-only
    // when it cannot be opened for writing. Only while empty.
    void open_file(const std::string& path, std::size_t n);
    // Copy n stored rows (n, row_bytes) into RAM. Only while empty and in RAM.
    void restore(const std::uint8_t* rows, std::size_t n);

    // Encode float32 rows x (n, dim) to the storage and write them at `slots` (>= 0; slots
    // past the end extend the store, rows in between are zero). Throws std::invalid_argument
    // (bad slot, float16 overflow), std::system_error (file), leaving the store as before.
    void put(const std::int64_t* slots, const float* x, std::size_t n);
    // Rows after the last one.
    void append(const float* x, std::size_t n);

    // Decode the rows of `slots` (each < size()) to float32 out (n, dim).
    void decode(const std::int64_t* slots, std::size_t n, float* out) const;
    // Exact distances of candidate slots (-1 = none; others must be < size()):
    // queries (nq, dim) float32 as the store expects them (unit length for cosine);
    // out (nq, k) ascending distances and slots, padded with +inf / -1.
    void rerank(const float* queries, std::size_t nq, const std::int64_t* candidates, std::size_t c,
                std::size_t k, std::size_t threads, float* out_distances, std::int64_t* out_slots) const;
    // Stored bytes (size() * row_bytes) copied to out; their CRC-32.
    void copy_rows(std::uint8_t* out) const;
    std::uint32_t crc32() const;

    std::size_t size() const;
    std::size_t nbytes() const;  // bytes in RAM (the ranges only for a file)
    const StoreSpec& spec() const { return spec_; }
    bool in_file() const { return fd_ >= 0; }
    bool writable() const { return fd_ < 0 || writable_; }
    const std::string& path() const { return path_; }
    // The rows (size(), row_bytes); valid until the next put. Callers hold the owner's lock.
    const std::uint8_t* data() const { return fd_ >= 0 ? map_ : mem_.get(); }
    std::size_t count() const { return n_; }  // size() for callers that hold lock()
    RwLock& lock() const { return lock_; }

   private:
    void check_empty(const char* what) const;
    void encode(const float* x, std::size_t n, std::uint8_t* out) const;
    void map_file(std::size_t bytes);
    void put_file(const std::int64_t* slots, const std::uint8_t* rows, std::size_t n, std::size_t need);

    const KernelTable* table_;
    StoreSpec spec_;
    std::vector<float> lo_, scale_;
    std::size_t n_ = 0;
    RowMemory mem_;  // RAM rows (memory.hpp: huge pages from 4 MiB on), room for mem_bytes_
    std::size_t mem_bytes_ = 0;  // (grows by 1.5x)
    int fd_ = -1;
    bool writable_ = false;
    std::string path_;
    std::uint8_t* map_ = nullptr;  // file rows, mapped with room for map_bytes_
    std::size_t map_bytes_ = 0;
    mutable RwLock lock_;
};

// The last stage of every compressed search: candidates (nq, c) slots (-1 = none) with their
// compressed distances (ascending per query) -> (nq, k) distances and slots, re-scored
// exactly by `rows` when given (queries: (nq, rows dim) float32), else the first k kept.
// The first step of an index's add: write the rows x (n, dim) at `slots` after map.next_ids()
// reserved the add's sequential ids, before anything is bound. A failed write (full disk,
// read-only file) puts the id sequence back to next_before and rethrows: the index is as
// before the add and its next add gets the same ids.
inline void put_rows_of_add(RerankRows& rows, IdMap& map, std::int64_t next_before, const std::int64_t* slots,
                            const float* x, std::size_t n) {
    try {
        rows.put(slots, x, n);
    } catch (...) {
        map.rewind_next_id(next_before);
        throw;
    }
}

void keep_candidates(const RerankRows* rows, const float* queries, std::size_t nq, const float* cand_d,
                     const std::int64_t* cand, std::size_t c, std::size_t k, std::size_t threads,
                     float* out_distances, std::int64_t* out_slots);

}  // namespace simdex
