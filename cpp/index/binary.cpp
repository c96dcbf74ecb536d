#include "index/binary.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "index/scan.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowBlock = 1024;  // rows scored per kernel call
constexpr std::size_t kQueryGroup = 16;  // queries per tile call (symmetric scans)
constexpr std::size_t kTileRows = 256;   // rows per tile call: 16 x 256 scores, rows stay in L1

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

// Symmetric scan in query groups: each tile call scores kQueryGroup queries against
// kTileRows rows, so a block of rows is read (and transposed by the kernel) once per group
// instead of once per query. Tasks are (group, row range) pairs; heaps merge as in scan_topk.
void planes_search_grouped(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                           std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                           std::size_t nq, std::size_t k, const std::uint8_t* mask,
                           std::size_t threads, float* out_distances, std::int64_t* out_slots) {
    const auto* codes = static_cast<const std::uint8_t*>(queries.data);
    const std::size_t groups = (nq + kQueryGroup - 1) / kQueryGroup;
    const std::size_t n_blocks = (n + kTileRows - 1) / kTileRows;
    const std::size_t row_bytes = bits_x * plane_bytes, query_bytes = queries.bits_q * plane_bytes;
    RangeSplit split(n_blocks, groups, threads);
    const std::size_t ranges = split.ranges;
    std::vector<TopK> heaps(ranges * nq, TopK(k));
    parallel_for(groups * ranges, threads, [&](std::size_t task, std::size_t) {
        const std::size_t group = task / ranges, range = task % ranges;
        const std::size_t q0 = group * kQueryGroup, count_q = std::min(kQueryGroup, nq - q0);
        std::vector<float> buffer(kQueryGroup * kTileRows);
        for (std::size_t b = split.first(range); b < split.last(range, n_blocks); ++b) {
            const std::size_t r0 = b * kTileRows, count = std::min(kTileRows, n - r0);
            table.binary.planes_xor_tile(codes + q0 * query_bytes, count_q, queries.bits_q,
                                         rows + r0 * row_bytes, count, bits_x, plane_bytes,
                                         queries.weights, queries.offsets + q0, buffer.data());
            for (std::size_t i = 0; i < count_q; ++i)
                push_masked(heaps[range * nq + q0 + i], buffer.data() + i * count, count, r0, mask);
        }
    });
    merge_ranges(heaps, ranges, nq, k, out_distances, out_slots, threads);
}

}  // namespace

void planes_search(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                   std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                   std::size_t nq, std::size_t k, const std::uint8_t* mask, std::size_t threads,
                   float* out_distances, std::int64_t* out_slots) {
    if (nq == 0) return;
    bool sparse = false;  // a mask allowing under 1/8 of the rows: scan_topk scores only those
    if (mask != nullptr) {
        std::size_t count = 0;
        for (std::size_t i = 0; i < n; ++i) count += mask[i] != 0;
        sparse = count * 8 < n;
    }
    if (queries.scoring == PlaneScoring::symmetric && !sparse) {
        planes_search_grouped(table, rows, n, bits_x, plane_bytes, queries, nq, k, mask, threads,
                              out_distances, out_slots);
        return;
    }
    PlaneScorer scorer{table, rows, bits_x, plane_bytes, queries};
    struct QueryView {
        const PlaneScorer* scorer;
        std::size_t qi;
        void block(std::size_t r0, std::size_t count, float* out) const { scorer->score(qi, r0, count, out); }
        float one(std::size_t slot) const {
            float dist;
            scorer->score(qi, slot, 1, &dist);
            return dist;
        }
    };
    auto make_scorer = [&](std::size_t qi) { return QueryView{&scorer, qi}; };
    scan_topk(n, nq, k, mask, threads, kRowBlock, make_scorer, out_distances, out_slots);
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

void hamming_to_scores(float* values, std::size_t count, float alpha, std::size_t dim) {
    const float a2 = alpha * alpha, d = static_cast<float>(dim);
    for (std::size_t i = 0; i < count; ++i)
        if (values[i] != std::numeric_limits<float>::infinity()) values[i] = 1.0f - a2 * (d - 2.0f * values[i]);
}

void planes_rescore(const KernelTable& table, const std::uint8_t* rows, std::size_t n, std::size_t bits_x,
                    std::size_t plane_bytes, const PlaneQueries& queries, std::size_t nq,
                    const std::int64_t* candidates, std::size_t c, std::size_t keep, std::size_t threads,
                    float* out_scores, std::int64_t* out_slots) {
    std::vector<float> scores(nq * c);
    planes_score_slots(table, rows, n, bits_x, plane_bytes, queries, nq, candidates, c, threads, scores.data());
    parallel_for(nq, threads, [&](std::size_t qi, std::size_t) {
        std::vector<std::size_t> order(c);
        for (std::size_t j = 0; j < c; ++j) order[j] = j;
        const float* s = scores.data() + qi * c;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
        for (std::size_t j = 0; j < keep; ++j) {
            const bool some = j < c && s[order[j]] != std::numeric_limits<float>::infinity();
            out_scores[qi * keep + j] = some ? s[order[j]] : std::numeric_limits<float>::infinity();
            out_slots[qi * keep + j] = some ? candidates[qi * c + order[j]] : -1;
        }
    });
}

}  // namespace simdex
