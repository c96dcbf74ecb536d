#include "index/binary.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowBlock = 1024;  // rows scored per kernel call

// Scores rows [first, first + count) against query qi into out (count,).
struct PlaneScorer {
    const KernelTable& table;
    const std::uint8_t* rows;
    std::size_t bits_x, plane_bytes;
    const PlaneQueries& queries;

    std::size_t row_bytes() const { return bits_x * plane_bytes; }

    void score(std::size_t qi, std::size_t first, std::size_t count, float* out) const {
        const std::uint8_t* block = rows + first * row_bytes();
        if (queries.scoring == PlaneScoring::symmetric) {
            const auto* codes = static_cast<const std::uint8_t*>(queries.data);
            table.binary.planes_xor_rows(codes + qi * queries.bits_q * plane_bytes, queries.bits_q,
                                         block, count, bits_x, plane_bytes, queries.weights,
                                         queries.offsets[qi], out);
        } else {
            const auto* floats = static_cast<const float*>(queries.data);
            table.binary.planes_float_rows(floats + qi * 8 * plane_bytes, block, count, bits_x,
                                           plane_bytes, queries.weights, queries.offsets[qi], out);
        }
    }
};

}  // namespace

void planes_search(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                   std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                   std::size_t nq, std::size_t k, const std::uint8_t* mask, std::size_t threads,
                   float* out_distances, std::int64_t* out_slots) {
    if (nq == 0) return;
    PlaneScorer scorer{table, rows, bits_x, plane_bytes, queries};
    std::size_t n_blocks = (n + kRowBlock - 1) / kRowBlock;
    // Row ranges per query when queries are too few to keep every thread busy.
    std::size_t ranges = nq >= 2 * threads ? 1 : std::max<std::size_t>(1, std::min(n_blocks, 4 * threads));
    std::size_t blocks_per_range = std::max<std::size_t>(1, (n_blocks + ranges - 1) / ranges);
    ranges = std::max<std::size_t>(1, (n_blocks + blocks_per_range - 1) / blocks_per_range);
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
            ranges = 1;
        }
    }
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    parallel_for(nq * ranges, threads, [&](std::size_t task, std::size_t) {
        std::size_t qi = task / ranges, range = task % ranges;
        TopK& heap = heaps[range * nq + qi];
        if (sparse) {
            for (std::uint32_t slot : allowed) {
                float dist;
                scorer.score(qi, slot, 1, &dist);
                if (dist < heap.threshold()) heap.push(dist, slot);
            }
            return;
        }
        std::vector<float> buffer(kRowBlock);
        std::size_t first = range * blocks_per_range, last = std::min(n_blocks, first + blocks_per_range);
        for (std::size_t b = first; b < last; ++b) {
            std::size_t r0 = b * kRowBlock, r_count = std::min(kRowBlock, n - r0);
            scorer.score(qi, r0, r_count, buffer.data());
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

void planes_score_slots(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                        std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                        std::size_t nq, const std::int64_t* candidates, std::size_t c,
                        std::size_t threads, float* out) {
    PlaneScorer scorer{table, rows, bits_x, plane_bytes, queries};
    parallel_for(nq, threads, [&](std::size_t qi, std::size_t) {
        for (std::size_t j = 0; j < c; ++j) {
            std::int64_t slot = candidates[qi * c + j];
            float* dst = out + qi * c + j;
            if (slot < 0 || static_cast<std::size_t>(slot) >= n)
                *dst = std::numeric_limits<float>::infinity();
            else
                scorer.score(qi, static_cast<std::size_t>(slot), 1, dst);
        }
    });
}

}  // namespace simdex
