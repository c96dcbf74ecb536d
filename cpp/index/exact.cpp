#include "index/exact.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <limits>
#include <utility>
#include <vector>

#include "index/scan.hpp"
#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowBlock = 1024;  // rows scored per kernel call (fits L1/L2 output)

bool use_gemm(const StoreSpec& spec, std::size_t nq) {
    return spec.storage == Storage::f32 && nq >= 4;
}

// Hamming tiles: kHammingTileQ queries x about 16 KiB of codes (L1-resident).
constexpr std::size_t kHammingTileQ = 128;
std::size_t hamming_tile_rows(std::size_t nbytes) {
    return std::max<std::size_t>(64, (16 * 1024) / std::max<std::size_t>(nbytes, 1));
}

// Squared norms of f32 rows (for l2 through inner products): (n,)
std::vector<float> row_norms(const KernelTable& t, const float* x, std::size_t n, std::size_t d,
                             std::size_t threads) {
    std::vector<float> norms(n);
    std::size_t blocks = (n + kRowBlock - 1) / kRowBlock;
    parallel_for(blocks, threads, [&](std::size_t b, std::size_t) {
        std::size_t end = std::min(n, (b + 1) * kRowBlock);
        for (std::size_t i = b * kRowBlock; i < end; ++i)
            norms[i] = t.dot_f32(x + i * d, x + i * d, d);
    });
    return norms;
}

// Convert a tile of inner products to distances in place.
//   tile: (nq_tile, n_tile) with row stride `stride`
void ip_to_distance(const StoreSpec& spec, float* tile, std::size_t nq_tile, std::size_t n_tile,
                    std::size_t stride, const float* query_norms, const float* norms) {
    for (std::size_t i = 0; i < nq_tile; ++i) {
        float* row = tile + i * stride;
        if (spec.metric == Metric::l2) {
            float qn = query_norms[i];
            for (std::size_t j = 0; j < n_tile; ++j)
                row[j] = std::max(0.0f, qn + norms[j] - 2.0f * row[j]);
        } else {
            for (std::size_t j = 0; j < n_tile; ++j) row[j] = 1.0f - row[j];
        }
    }
}

// GEMM path: tiles of (tile_q queries x tile_n rows) through ip_tile_f32.
// Work split: over query tiles when there are enough of them, else over row ranges with a
// private heap per (range, query) merged at the end.
// out_matrix with raw = true receives the inner products themselves. packed: x packed by
// t.gemm_pack_rows (read through t.ip_tile_f32_packed), or nullptr.
void gemm_search(const KernelTable& t, const StoreSpec& spec, const float* x, std::size_t n,
                 const float* queries, std::size_t nq, std::size_t k, const std::uint8_t* mask,
                 std::size_t threads, float* out_distances, std::int64_t* out_slots,
                 float* out_matrix, bool raw = false, const float* packed = nullptr) {
    std::size_t d = spec.dim;
    std::size_t tile_q = t.gemm_tile_q, tile_n = t.gemm_tile_n;
    std::vector<float> norms, query_norms(nq);
    if (spec.metric == Metric::l2) {
        norms = row_norms(t, x, n, d, threads);
        for (std::size_t i = 0; i < nq; ++i)
            query_norms[i] = t.dot_f32(queries + i * d, queries + i * d, d);
    }
    std::size_t q_tiles = (nq + tile_q - 1) / tile_q;
    std::size_t n_tiles = (n + tile_n - 1) / tile_n;
    RangeSplit split(n_tiles, q_tiles, threads);
    std::size_t ranges = split.ranges;
    // sized for the queries a task really has (min(tile_q, nq)): with tile_q = 252 (haswell) a
    // one-query call would zero-fill ~400 kB per task for d = 384
    std::size_t scratch_floats = t.gemm_scratch_floats(std::min(tile_q, nq), tile_n, d);

    std::vector<TopK> heaps;
    if (out_matrix == nullptr) heaps.assign(ranges * nq, TopK(k));
    parallel_for(q_tiles * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qt = task / ranges, range = task % ranges;
        std::size_t q0 = qt * tile_q, q_count = std::min(tile_q, nq - q0);
        std::vector<float> tile(out_matrix != nullptr ? 0 : tile_q * tile_n);  // (unused when writing out_matrix)
        std::vector<float> scratch(scratch_floats);
        for (std::size_t nt = split.first(range); nt < split.last(range, n_tiles); ++nt) {
            std::size_t r0 = nt * tile_n, r_count = std::min(tile_n, n - r0);
            if (out_matrix != nullptr) {
                float* dst = out_matrix + q0 * n + r0;
                if (packed != nullptr)
                    t.ip_tile_f32_packed(queries + q0 * d, q_count, packed + r0 * d, r_count, d,
                                         dst, n, scratch.data());
                else
                    t.ip_tile_f32(queries + q0 * d, q_count, x + r0 * d, r_count, d, dst, n,
                                  scratch.data());
                if (!raw)
                    ip_to_distance(spec, dst, q_count, r_count, n, query_norms.data() + q0,
                                   norms.empty() ? nullptr : norms.data() + r0);
                continue;
            }
            t.ip_tile_f32(queries + q0 * d, q_count, x + r0 * d, r_count, d, tile.data(), tile_n,
                          scratch.data());
            ip_to_distance(spec, tile.data(), q_count, r_count, tile_n, query_norms.data() + q0,
                           norms.empty() ? nullptr : norms.data() + r0);
            for (std::size_t i = 0; i < q_count; ++i)
                push_masked(heaps[range * nq + q0 + i], tile.data() + i * tile_n, r_count, r0, mask);
        }
    });
    if (out_matrix == nullptr) merge_ranges(heaps, ranges, nq, k, out_distances, out_slots, threads);
}

// Hamming path: tiles of queries x rows through hamming_tile, which returns only the rows
// under each query's current selection bound. Heap is CountTopK (counting selection for small
// integer distances) or TopK.
template <class Heap>
void hamming_search(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* x,
                    std::size_t n, const std::uint8_t* queries, std::size_t nq,
                    const std::uint8_t* mask, std::size_t threads, std::vector<Heap>& heaps,
                    std::size_t ranges, const RangeSplit& split) {
    std::size_t nbytes = spec.row_bytes;
    const std::size_t tile_q = kHammingTileQ;
    const std::size_t tile_n = hamming_tile_rows(nbytes);
    std::size_t q_tiles = (nq + tile_q - 1) / tile_q;
    std::size_t n_tiles = (n + tile_n - 1) / tile_n;
    parallel_for(q_tiles * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qt = task / ranges, range = task % ranges;
        std::size_t q0 = qt * tile_q, q_count = std::min(tile_q, nq - q0);
        Heap* tile_heaps = heaps.data() + range * nq + q0;
        std::vector<std::uint32_t> rows(tile_q * tile_n), counts(tile_q * tile_n);
        std::uint32_t limits[kHammingTileQ], hits[kHammingTileQ];
        for (std::size_t nt = split.first(range); nt < split.last(range, n_tiles); ++nt) {
            std::size_t r0 = nt * tile_n, r_count = std::min(tile_n, n - r0);
            for (std::size_t i = 0; i < q_count; ++i) limits[i] = tile_heaps[i].count_limit();
            t.hamming_tile(queries + q0 * nbytes, q_count, x + r0 * nbytes, r_count, nbytes, limits,
                           rows.data(), counts.data(), hits);
            for (std::size_t i = 0; i < q_count; ++i) {
                const std::uint32_t* hit_rows = rows.data() + i * r_count;
                const std::uint32_t* hit_counts = counts.data() + i * r_count;
                for (std::uint32_t h = 0; h < hits[i]; ++h) {
                    std::size_t slot = r0 + hit_rows[h];
                    if (mask == nullptr || mask[slot])
                        tile_heaps[i].push(hit_counts[h], static_cast<std::int64_t>(slot));
                }
            }
        }
    });
}

void hamming_search(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* x,
                    std::size_t n, const std::uint8_t* queries, std::size_t nq, std::size_t k,
                    const std::uint8_t* mask, std::size_t threads, float* out_distances,
                    std::int64_t* out_slots) {
    std::size_t n_tiles = (n + hamming_tile_rows(spec.row_bytes) - 1) / hamming_tile_rows(spec.row_bytes);
    RangeSplit split(n_tiles, (nq + kHammingTileQ - 1) / kHammingTileQ, threads);
    std::size_t ranges = split.ranges;
    std::size_t max_distance = spec.row_bytes * 8;
    // Counting selection needs (max_distance + 1) counters per (range, query): cap that memory.
    if ((max_distance + 1) * 4 * nq * ranges <= (std::size_t{64} << 20)) {
        std::vector<CountTopK> heaps(ranges * nq, CountTopK(k, static_cast<std::uint32_t>(max_distance)));
        hamming_search(t, spec, x, n, queries, nq, mask, threads, heaps, ranges, split);
        merge_ranges(heaps, ranges, nq, k, out_distances, out_slots, threads);
        return;
    }
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    hamming_search(t, spec, x, n, queries, nq, mask, threads, heaps, ranges, split);
    merge_ranges(heaps, ranges, nq, k, out_distances, out_slots, threads);
}

// Generic path: one query at a time through the rows kernels (any storage).
void rows_search(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* data,
                 std::size_t n, const std::uint8_t* queries, std::size_t nq, std::size_t k,
                 const std::uint8_t* mask, std::size_t threads, float* out_distances,
                 std::int64_t* out_slots) {
    struct RowsScorer {
        QueryScorer scorer;
        const StoreSpec* spec;
        const std::uint8_t* data;
        void block(std::size_t r0, std::size_t count, float* out) const {
            scorer.distances(data + r0 * spec->row_bytes, count, out);
        }
        float one(std::size_t slot) const { return scorer.distance(data + slot * spec->row_bytes); }
    };
    std::size_t qbytes = query_bytes(spec);
    auto make_scorer = [&](std::size_t qi) {
        RowsScorer s{QueryScorer(t, spec), &spec, data};
        s.scorer.set_query(queries + qi * qbytes);
        return s;
    };
    scan_topk(n, nq, k, mask, threads, kRowBlock, make_scorer, out_distances, out_slots);
}

// The final top-k of every query re-scored by the one Scorer (direct differences for l2, the
// pair kernels otherwise) and re-sorted: from `wide` candidates per query (the GEMM path's
// ||q||^2 - 2<q,x> + ||x||^2 form cancels badly when norms dwarf distances, so it proposes
// more than k) down to k. Every path then returns the same distance for the same pair.
void rescore_topk(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* data,
                  const std::uint8_t* queries, std::size_t nq, std::size_t wide,
                  const std::int64_t* wide_slots, std::size_t k,
                  std::size_t threads, float* out_distances, std::int64_t* out_slots) {
    const std::size_t qbytes = query_bytes(spec);
    constexpr std::size_t kChunk = 16;
    parallel_for((nq + kChunk - 1) / kChunk, threads, [&](std::size_t task, std::size_t) {
        QueryScorer scorer(t, spec);
        std::vector<std::pair<float, std::int64_t>> found;
        for (std::size_t i = task * kChunk; i < std::min(nq, (task + 1) * kChunk); ++i) {
            scorer.set_query(queries + i * qbytes);
            found.clear();
            for (std::size_t j = 0; j < wide; ++j) {
                const std::int64_t slot = wide_slots[i * wide + j];
                if (slot < 0) continue;
                found.emplace_back(scorer.distance(data + static_cast<std::size_t>(slot) * spec.row_bytes), slot);
            }
            const std::size_t keep = std::min(k, found.size());
            std::partial_sort(found.begin(), found.begin() + keep, found.end());
            for (std::size_t j = 0; j < k; ++j) {
                out_distances[i * k + j] = j < keep ? found[j].first : std::numeric_limits<float>::infinity();
                out_slots[i * k + j] = j < keep ? found[j].second : -1;
            }
        }
    });
}

}  // namespace

void exact_search(const KernelTable& table, const StoreSpec& spec, const std::uint8_t* data,
                  std::size_t n, const void* queries, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, float* out_distances,
                  std::int64_t* out_slots) {
    if (nq == 0) return;
    const auto* query_bytes_ptr = static_cast<const std::uint8_t*>(queries);
    if (spec.storage == Storage::bits && nq >= 4) {
        hamming_search(table, spec, data, n, query_bytes_ptr, nq, k, mask, threads, out_distances,
                       out_slots);
    } else if (use_gemm(spec, nq)) {
        const std::size_t wide = k + std::min<std::size_t>(k, 8);
        std::vector<float> distances(nq * wide);
        std::vector<std::int64_t> slots(nq * wide);
        gemm_search(table, spec, reinterpret_cast<const float*>(data), n,
                    static_cast<const float*>(queries), nq, wide, mask, threads, distances.data(),
                    slots.data(), nullptr);
        rescore_topk(table, spec, data, query_bytes_ptr, nq, wide, slots.data(), k, threads,
                     out_distances, out_slots);
    } else {
        rows_search(table, spec, data, n, query_bytes_ptr, nq, k, mask, threads, out_distances,
                    out_slots);
        if (spec.storage != Storage::bits)
            rescore_topk(table, spec, data, query_bytes_ptr, nq, k, out_slots, k, threads,
                         out_distances, out_slots);
    }
}

void inner_products(const KernelTable& table, const float* rows, std::size_t n,
                    const float* queries, std::size_t nq, std::size_t dim, std::size_t threads,
                    float* out) {
    inner_products(table, PackedRows(), rows, n, queries, nq, dim, threads, out);
}

PackedRows::PackedRows(const KernelTable& table, const float* rows, std::size_t n, std::size_t dim)
    : pack_(table.gemm_pack_rows), n_(n), dim_(dim) {
    if (pack_ == nullptr) return;
    allocate(table.gemm_packed_floats(n, dim));
    if (floats_ != 0) pack_(rows, n, dim, buffer_.get());
}

PackedRows::PackedRows(const PackedRows& other) : pack_(other.pack_), n_(other.n_), dim_(other.dim_) {
    allocate(other.floats_);
    if (floats_ != 0) std::memcpy(buffer_.get(), other.buffer_.get(), floats_ * sizeof(float));
}

PackedRows& PackedRows::operator=(const PackedRows& other) {
    if (this != &other) *this = PackedRows(other);
    return *this;
}

void PackedRows::Free::operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }

void PackedRows::allocate(std::size_t floats) {
    floats_ = floats;
    buffer_.reset(floats == 0 ? nullptr
                              : static_cast<float*>(::operator new[](floats * sizeof(float), std::align_val_t(64))));
}

const float* PackedRows::for_table(const KernelTable& table, std::size_t n, std::size_t dim) const {
    if (pack_ == nullptr || table.gemm_pack_rows != pack_ || n != n_ || dim != dim_) return nullptr;
    return buffer_.get();
}

void inner_products(const KernelTable& table, const PackedRows& packed, const float* rows,
                    std::size_t n, const float* queries, std::size_t nq, std::size_t dim,
                    std::size_t threads, float* out) {
    if (nq == 0 || n == 0) return;
    StoreSpec spec;
    spec.storage = Storage::f32;
    spec.metric = Metric::ip;
    spec.dim = dim;
    spec.row_bytes = 4 * dim;
    gemm_search(table, spec, rows, n, queries, nq, 0, nullptr, threads, nullptr, nullptr, out, true,
                packed.for_table(table, n, dim));
}

void pairwise_distances(const KernelTable& table, const StoreSpec& spec,
                        const std::uint8_t* data, std::size_t n, const void* queries,
                        std::size_t nq, std::size_t threads, float* out) {
    if (nq == 0 || n == 0) return;
    if (use_gemm(spec, nq)) {
        gemm_search(table, spec, reinterpret_cast<const float*>(data), n,
                    static_cast<const float*>(queries), nq, 0, nullptr, threads, nullptr, nullptr,
                    out);
        return;
    }
    std::size_t qbytes = query_bytes(spec);
    const auto* q = static_cast<const std::uint8_t*>(queries);
    std::size_t n_blocks = (n + kRowBlock - 1) / kRowBlock;
    parallel_for(nq * n_blocks, threads, [&](std::size_t task, std::size_t) {
        std::size_t qi = task / n_blocks, b = task % n_blocks;
        QueryScorer scorer(table, spec);
        scorer.set_query(q + qi * qbytes);
        std::size_t r0 = b * kRowBlock, r_count = std::min(kRowBlock, n - r0);
        scorer.distances(data + r0 * spec.row_bytes, r_count, out + qi * n + r0);
    });
}

}  // namespace simdex

namespace simdex {

void rerank_candidates(const KernelTable& table, const StoreSpec& spec, const std::uint8_t* data,
                       const void* queries, std::size_t nq, const std::int64_t* candidates,
                       std::size_t c, std::size_t k, std::size_t threads, float* out_distances,
                       std::int64_t* out_slots) {
    std::size_t qbytes = query_bytes(spec);
    const auto* q = static_cast<const std::uint8_t*>(queries);
    const std::size_t per_task = 16;
    std::size_t tasks = (nq + per_task - 1) / per_task;
    parallel_for(tasks, threads, [&](std::size_t task, std::size_t) {
        QueryScorer scorer(table, spec);
        TopK heap(k);
        std::size_t end = std::min(nq, (task + 1) * per_task);
        for (std::size_t i = task * per_task; i < end; ++i) {
            scorer.set_query(q + i * qbytes);
            heap.clear();
            const std::int64_t* row = candidates + i * c;
            for (std::size_t j = 0; j < c; ++j) {
                if (row[j] < 0) continue;
                const std::uint8_t* x = data + static_cast<std::size_t>(row[j]) * spec.row_bytes;
                if (j + 2 < c && row[j + 2] >= 0)
                    __builtin_prefetch(data + static_cast<std::size_t>(row[j + 2]) * spec.row_bytes);
                float dist = scorer.distance(x);
                if (dist < heap.threshold()) heap.push(dist, row[j]);
            }
            heap.write_sorted(out_distances + i * k, out_slots + i * k);
        }
    });
}

}  // namespace simdex
