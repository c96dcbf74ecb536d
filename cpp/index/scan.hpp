// Threaded exact top-k scans shared by every flat index (dense rows, bit planes, ...):
// how rows are split across threads, the sparse-filter path, and merging per-range heaps.
// Baseline code only.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {

// Splits `blocks` units of rows into ranges: one range when there are at least twice as many
// query tasks as threads, else up to 4 ranges per thread so few queries still use every core.
struct RangeSplit {
    std::size_t ranges = 1, per_range = 1;
    RangeSplit(std::size_t blocks, std::size_t query_tasks, std::size_t threads) {
        ranges = query_tasks >= 2 * threads ? 1 : std::max<std::size_t>(1, std::min(blocks, 4 * threads));
        per_range = std::max<std::size_t>(1, (blocks + ranges - 1) / ranges);
        ranges = std::max<std::size_t>(1, (blocks + per_range - 1) / per_range);
    }
    std::size_t first(std::size_t range) const { return range * per_range; }
    std::size_t last(std::size_t range, std::size_t blocks) const {
        return std::min(blocks, first(range) + per_range);
    }
};

// heaps: (ranges, nq) row-major (TopK or CountTopK); writes (nq, k) results merged over the
// ranges, queries in parallel.
template <class Heap>
void merge_ranges(std::vector<Heap>& heaps, std::size_t ranges, std::size_t nq, std::size_t k,
                  float* out_distances, std::int64_t* out_slots, std::size_t threads) {
    constexpr std::size_t kChunk = 16;  // queries per task
    parallel_for((nq + kChunk - 1) / kChunk, threads, [&](std::size_t task, std::size_t) {
        for (std::size_t i = task * kChunk; i < std::min(nq, (task + 1) * kChunk); ++i) {
            for (std::size_t r = 1; r < ranges; ++r) heaps[i].merge_from(heaps[r * nq + i]);
            heaps[i].write_sorted(out_distances + i * k, out_slots + i * k);
        }
    });
}

// Push the distances of rows [r0, r0 + count) that the mask allows (nullptr = all).
inline void push_masked(TopK& heap, const float* distances, std::size_t count, std::size_t r0,
                        const std::uint8_t* mask) {
    if (mask == nullptr) {
        heap.push_range(distances, count, static_cast<std::int64_t>(r0));
        return;
    }
    for (std::size_t j = 0; j < count; ++j)
        if (mask[r0 + j] && distances[j] < heap.threshold())
            heap.push(distances[j], static_cast<std::int64_t>(r0 + j));
}

// Top-k of nq queries over n rows, one query at a time.
//   make_scorer(query) returns an object with
//     block(first_row, count, out): distances of rows [first_row, first_row + count)
//     one(row) -> float
// With a mask allowing under 1/8 of the rows, only the allowed rows are scored.
template <class MakeScorer>
void scan_topk(std::size_t n, std::size_t nq, std::size_t k, const std::uint8_t* mask,
               std::size_t threads, std::size_t row_block, const MakeScorer& make_scorer,
               float* out_distances, std::int64_t* out_slots) {
    std::size_t n_blocks = (n + row_block - 1) / row_block;
    RangeSplit split(n_blocks, nq, threads);
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
            split.ranges = 1;
        }
    }
    std::size_t ranges = split.ranges;
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    parallel_for(nq * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qi = task / ranges, range = task % ranges;
        TopK& heap = heaps[range * nq + qi];
        auto scorer = make_scorer(qi);
        if (sparse) {
            for (std::uint32_t slot : allowed) {
                float dist = scorer.one(slot);
                if (dist < heap.threshold()) heap.push(dist, slot);
            }
            return;
        }
        std::vector<float> buffer(row_block);
        for (std::size_t b = split.first(range); b < split.last(range, n_blocks); ++b) {
            std::size_t r0 = b * row_block, count = std::min(row_block, n - r0);
            scorer.block(r0, count, buffer.data());
            push_masked(heap, buffer.data(), count, r0, mask);
        }
    });
    merge_ranges(heaps, ranges, nq, k, out_distances, out_slots, threads);
}

}  // namespace simdex
