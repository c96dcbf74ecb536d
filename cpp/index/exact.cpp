#include "index/exact.hpp"

#include <algorithm>
#include <vector>

#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowBlock = 1024;  // rows scored per kernel call (fits L1/L2 output)

bool use_gemm(const StoreSpec& spec, std::size_t nq) {
    return spec.storage == Storage::f32 && nq >= 4;
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
void gemm_search(const KernelTable& t, const StoreSpec& spec, const float* x, std::size_t n,
                 const float* queries, std::size_t nq, std::size_t k, const std::uint8_t* mask,
                 std::size_t threads, float* out_distances, std::int64_t* out_slots,
                 float* out_matrix) {
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
    // Row ranges: enough to keep every thread busy when queries are few.
    std::size_t ranges = q_tiles >= 2 * threads ? 1 : std::min(n_tiles, 4 * threads);
    std::size_t tiles_per_range = (n_tiles + ranges - 1) / ranges;
    ranges = (n_tiles + tiles_per_range - 1) / tiles_per_range;
    std::size_t scratch_floats = t.gemm_scratch_floats(tile_q, tile_n, d);

    std::vector<TopK> heaps;
    if (out_matrix == nullptr) heaps.assign(ranges * nq, TopK(k));
    parallel_for(q_tiles * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qt = task / ranges, range = task % ranges;
        std::size_t q0 = qt * tile_q, q_count = std::min(tile_q, nq - q0);
        std::vector<float> tile(tile_q * tile_n);
        std::vector<float> scratch(scratch_floats);
        std::size_t first = range * tiles_per_range, last = std::min(n_tiles, first + tiles_per_range);
        for (std::size_t nt = first; nt < last; ++nt) {
            std::size_t r0 = nt * tile_n, r_count = std::min(tile_n, n - r0);
            if (out_matrix != nullptr) {
                float* dst = out_matrix + q0 * n + r0;
                t.ip_tile_f32(queries + q0 * d, q_count, x + r0 * d, r_count, d, dst, n,
                              scratch.data());
                ip_to_distance(spec, dst, q_count, r_count, n, query_norms.data() + q0,
                               norms.empty() ? nullptr : norms.data() + r0);
                continue;
            }
            t.ip_tile_f32(queries + q0 * d, q_count, x + r0 * d, r_count, d, tile.data(), tile_n,
                          scratch.data());
            ip_to_distance(spec, tile.data(), q_count, r_count, tile_n, query_norms.data() + q0,
                           norms.empty() ? nullptr : norms.data() + r0);
            for (std::size_t i = 0; i < q_count; ++i) {
                TopK& heap = heaps[range * nq + q0 + i];
                const float* row = tile.data() + i * tile_n;
                if (mask == nullptr) {
                    heap.push_range(row, r_count, static_cast<std::int64_t>(r0));
                } else {
                    for (std::size_t j = 0; j < r_count; ++j)
                        if (mask[r0 + j] && row[j] < heap.threshold())
                            heap.push(row[j], static_cast<std::int64_t>(r0 + j));
                }
            }
        }
    });
    if (out_matrix != nullptr) return;
    for (std::size_t i = 0; i < nq; ++i) {
        TopK& merged = heaps[i];
        for (std::size_t r = 1; r < ranges; ++r)
            for (auto& item : heaps[r * nq + i].items()) merged.push(item.first, item.second);
        merged.write_sorted(out_distances + i * k, out_slots + i * k);
    }
}

// Hamming path: tiles of queries x rows through hamming_tile (uint32 counts).
void hamming_search(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* x,
                    std::size_t n, const std::uint8_t* queries, std::size_t nq, std::size_t k,
                    const std::uint8_t* mask, std::size_t threads, float* out_distances,
                    std::int64_t* out_slots) {
    std::size_t nbytes = spec.row_bytes;
    const std::size_t tile_q = 32;
    const std::size_t tile_n = std::max<std::size_t>(64, (64 * 1024) / std::max<std::size_t>(nbytes, 1));
    std::size_t q_tiles = (nq + tile_q - 1) / tile_q;
    std::size_t n_tiles = (n + tile_n - 1) / tile_n;
    std::size_t ranges = q_tiles >= 2 * threads ? 1 : std::min(n_tiles, 4 * threads);
    std::size_t tiles_per_range = (n_tiles + ranges - 1) / ranges;
    ranges = (n_tiles + tiles_per_range - 1) / tiles_per_range;
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    parallel_for(q_tiles * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qt = task / ranges, range = task % ranges;
        std::size_t q0 = qt * tile_q, q_count = std::min(tile_q, nq - q0);
        std::vector<std::uint32_t> tile(tile_q * tile_n);
        std::size_t first = range * tiles_per_range, last = std::min(n_tiles, first + tiles_per_range);
        for (std::size_t nt = first; nt < last; ++nt) {
            std::size_t r0 = nt * tile_n, r_count = std::min(tile_n, n - r0);
            t.hamming_tile(queries + q0 * nbytes, q_count, x + r0 * nbytes, r_count, nbytes,
                           tile.data());
            for (std::size_t i = 0; i < q_count; ++i) {
                TopK& heap = heaps[range * nq + q0 + i];
                const std::uint32_t* row = tile.data() + i * r_count;
                float limit = heap.threshold();
                for (std::size_t j = 0; j < r_count; ++j) {
                    float dist = static_cast<float>(row[j]);
                    if (dist < limit && (mask == nullptr || mask[r0 + j])) {
                        heap.push(dist, static_cast<std::int64_t>(r0 + j));
                        limit = heap.threshold();
                    }
                }
            }
        }
    });
    for (std::size_t i = 0; i < nq; ++i) {
        TopK& merged = heaps[i];
        for (std::size_t r = 1; r < ranges; ++r)
            for (auto& item : heaps[r * nq + i].items()) merged.push(item.first, item.second);
        merged.write_sorted(out_distances + i * k, out_slots + i * k);
    }
}

// Generic path: one query at a time through the rows kernels (any storage), rows split
// into ranges across threads when queries are fewer than threads.
void rows_search(const KernelTable& t, const StoreSpec& spec, const std::uint8_t* data,
                 std::size_t n, const std::uint8_t* queries, std::size_t nq, std::size_t k,
                 const std::uint8_t* mask, std::size_t threads, float* out_distances,
                 std::int64_t* out_slots) {
    std::size_t qbytes = query_bytes(spec);
    std::size_t n_blocks = (n + kRowBlock - 1) / kRowBlock;
    std::size_t ranges = nq >= 2 * threads ? 1 : std::min(n_blocks, 4 * threads);
    std::size_t blocks_per_range = (n_blocks + ranges - 1) / ranges;
    ranges = (n_blocks + blocks_per_range - 1) / blocks_per_range;
    // Sparse filter (under 1/8 of the rows allowed): score only the allowed rows.
    std::vector<std::uint32_t> allowed;
    bool sparse = false;
    if (mask != nullptr) {
        std::size_t count = 0;
        for (std::size_t i = 0; i < n; ++i) count += mask[i] != 0;
        sparse = count * 8 < n;
        if (sparse) {
            allowed.reserve(count);
            for (std::size_t i = 0; i < n; ++i)
                if (mask[i]) allowed.push_back(static_cast<std::uint32_t>(i));
        }
    }
    if (sparse) ranges = 1;
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    parallel_for(nq * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qi = task / ranges, range = task % ranges;
        QueryScorer scorer(t, spec);
        scorer.set_query(queries + qi * qbytes);
        TopK& heap = heaps[range * nq + qi];
        if (sparse) {
            for (std::uint32_t slot : allowed) {
                float dist = scorer.distance(data + static_cast<std::size_t>(slot) * spec.row_bytes);
                if (dist < heap.threshold()) heap.push(dist, slot);
            }
            return;
        }
        std::vector<float> buffer(kRowBlock);
        std::size_t first = range * blocks_per_range, last = std::min(n_blocks, first + blocks_per_range);
        for (std::size_t b = first; b < last; ++b) {
            std::size_t r0 = b * kRowBlock, r_count = std::min(kRowBlock, n - r0);
            scorer.distances(data + r0 * spec.row_bytes, r_count, buffer.data());
            if (mask == nullptr) {
                heap.push_range(buffer.data(), r_count, static_cast<std::int64_t>(r0));
            } else {
                for (std::size_t j = 0; j < r_count; ++j)
                    if (mask[r0 + j] && buffer[j] < heap.threshold())
                        heap.push(buffer[j], static_cast<std::int64_t>(r0 + j));
            }
        }
    });
    for (std::size_t i = 0; i < nq; ++i) {
        TopK& merged = heaps[i];
        for (std::size_t r = 1; r < ranges; ++r)
            for (auto& item : heaps[r * nq + i].items()) merged.push(item.first, item.second);
        merged.write_sorted(out_distances + i * k, out_slots + i * k);
    }
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
        gemm_search(table, spec, reinterpret_cast<const float*>(data), n,
                    static_cast<const float*>(queries), nq, k, mask, threads, out_distances,
                    out_slots, nullptr);
    } else {
        rows_search(table, spec, data, n, query_bytes_ptr, nq, k, mask, threads, out_distances,
                    out_slots);
    }
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
