#include "index/binary.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "index/scan.hpp"
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
