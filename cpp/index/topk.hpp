// Bounded top-k selection: the k smallest (distance, id) pairs seen so far, ties kept in
// order of arrival (the final set is the k smallest by (distance, arrival)).
// Baseline code only (no ISA flags); used by every index.
//
// Small k (<= kSortedMax, e.g. the 10 results or 30 re-rank candidates of a search): the
// kept pairs sit in a sorted array and a push finds its place by counting the distances at
// or under it (a loop the compiler vectorises) and shifts the tail, so the limit is always
// the exact k-th distance: scans that test rows against it (fast-scan kernels, block
// bounds) let fewer rows through than with a lagging limit.
// Larger k: candidates under the current limit are appended to a buffer of 2k entries
// without any heap work; the limit is the worst of the first k once they are in, and when
// the buffer fills, nth_element keeps the k best and the limit drops to the k-th distance. A
// scan therefore pays one compare per row and O(1) amortised per accepted candidate (a
// binary heap pays O(log k) per accepted candidate).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace simdex {

class TopK {
   public:
    using Item = std::pair<float, std::int64_t>;

    static constexpr std::size_t kSortedMax = 32;

    explicit TopK(std::size_t k)
        : k_(k), capacity_(std::max<std::size_t>(2 * k, 32)), sorted_(k >= 1 && k <= kSortedMax) {
        if (sorted_) span_ = (k + 7) / 8 * 8, dist_.fill(std::numeric_limits<float>::infinity());
    }

    // Push only below this: +inf until k candidates were kept, then (an upper bound on) the
    // k-th best distance so far.
    float threshold() const { return limit_; }

    void push(float distance, std::int64_t id) {
        if (!(distance < limit_)) return;
        if (sorted_) {
            insert(distance, id);
            return;
        }
        if (items_.empty()) items_.reserve(capacity_);
        items_.emplace_back(distance, id);
        if (items_.size() >= capacity_) {
            compact();
        } else if (items_.size() == k_ && limit_ == std::numeric_limits<float>::infinity()) {
            // the first k: their worst is already a limit (callers that push fewer than 2k
            // candidates, e.g. a re-rank pruning on threshold(), would otherwise never get one)
            float worst = items_[0].first;
            for (const Item& item : items_) worst = std::max(worst, item.first);
            limit_ = worst;
        }
    }

    // Scan n distances with ids base + i, pushing those under the threshold. Blocks of 16
    // are first tested with a branch-free any() that the compiler vectorises, so a scan
    // whose limit is already tight costs about one vector compare per 16 rows.
    void push_range(const float* distances, std::size_t n, std::int64_t base) {
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const float limit = limit_;
            int any = 0;
            for (std::size_t j = 0; j < 16; ++j) any |= distances[i + j] < limit;
            if (!any) continue;
            for (std::size_t j = 0; j < 16; ++j)
                if (distances[i + j] < limit_) push(distances[i + j], base + static_cast<std::int64_t>(i + j));
        }
        for (; i < n; ++i)
            if (distances[i] < limit_) push(distances[i], base + static_cast<std::int64_t>(i));
    }

    void push(std::uint32_t distance, std::int64_t id) { push(static_cast<float>(distance), id); }

    // The bound for integer distances (Hamming counts): push only counts below it.
    // dist < limit  <=>  dist < ceil(limit) for integers; +inf lets everything through.
    std::uint32_t count_limit() const {
        return limit_ >= 4294967295.0f ? 0xffffffffu : static_cast<std::uint32_t>(std::ceil(limit_));
    }

    std::size_t size() const { return sorted_ ? kept_ : std::min(items_.size(), k_); }
    void clear() {
        items_.clear();
        if (sorted_) std::fill(dist_.begin(), dist_.begin() + static_cast<std::ptrdiff_t>(kept_), std::numeric_limits<float>::infinity());
        kept_ = 0;
        limit_ = std::numeric_limits<float>::infinity();
    }

    // Adds the candidates another selection kept (merging per-range selections).
    void merge_from(const TopK& other) {
        if (other.sorted_) {
            for (std::size_t i = 0; i < other.kept_; ++i) push(other.dist_[i], other.ids_[i]);
            return;
        }
        for (const Item& item : other.items_) push(item.first, item.second);
    }

    // Ascending by (distance, id); pads to k with (+inf, -1).
    void write_sorted(float* distances, std::int64_t* ids) {
        if (sorted_) {
            // sorted by (distance, arrival): order each run of equal distances by id
            for (std::size_t i = 0; i < kept_; ++i) {
                std::size_t j = i;
                while (j > 0 && dist_[i] == distances[j - 1] && ids_[i] < ids[j - 1]) {
                    distances[j] = distances[j - 1];
                    ids[j] = ids[j - 1];
                    --j;
                }
                distances[j] = dist_[i];
                ids[j] = ids_[i];
            }
            for (std::size_t i = kept_; i < k_; ++i) {
                distances[i] = std::numeric_limits<float>::infinity();
                ids[i] = -1;
            }
            return;
        }
        if (items_.size() > k_) compact();
        std::sort(items_.begin(), items_.end());
        std::size_t i = 0;
        for (; i < items_.size(); ++i) {
            distances[i] = items_[i].first;
            ids[i] = items_[i].second;
        }
        for (; i < k_; ++i) {
            distances[i] = std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
    }

   private:
    // Sorted mode: distance < limit_. Its place is after every kept distance <= it (ties stay
    // in arrival order); when k are kept the last one (the worst) makes room.
    void insert(float distance, std::int64_t id) {
        std::size_t pos = 0;
        for (std::size_t i = 0; i < span_; ++i) pos += dist_[i] <= distance;  // unused: +inf
        std::size_t n = kept_ == k_ ? k_ - 1 : kept_;
        // entries pos .. n - 1 move up one place (the one at n, if any, is dropped or +inf),
        // element by element from the top: a new candidate mostly lands near the end, so a
        // few moves instead of two library memmove calls per push (the empty asm hides the
        // index from the compiler, which would otherwise turn the loop back into memmoves)
        for (std::size_t i = n; i > pos; --i) {
            dist_[i] = dist_[i - 1];
            ids_[i] = ids_[i - 1];
            asm("" : "+r"(i));
        }
        dist_[pos] = distance;
        ids_[pos] = id;
        kept_ = n + 1;
        if (kept_ == k_) limit_ = dist_[k_ - 1];
    }

    // Keep the k best: select the k-th distance on a plain float copy (fast even with many
    // ties), then keep everything below it and fill up with entries equal to it.
    void compact() {
        if (k_ == 0) {
            items_.clear();
            return;
        }
        if (items_.size() > k_) {
            scratch_.resize(items_.size());
            for (std::size_t i = 0; i < items_.size(); ++i) scratch_[i] = items_[i].first;
            std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(k_ - 1),
                             scratch_.end());
            float kth = scratch_[k_ - 1];
            std::size_t below = 0;
            for (const Item& item : items_) below += item.first < kth;
            std::size_t ties_allowed = k_ - below, kept = 0;
            for (const Item& item : items_) {
                if (item.first < kth || (item.first == kth && ties_allowed > 0)) {
                    if (!(item.first < kth)) --ties_allowed;
                    items_[kept++] = item;
                }
            }
            items_.resize(kept);
            limit_ = kth;
            return;
        }
        if (items_.size() == k_) {
            float worst = items_[0].first;
            for (const Item& item : items_) worst = std::max(worst, item.first);
            limit_ = worst;
        }
    }

    std::size_t k_;
    std::size_t capacity_;
    bool sorted_;
    float limit_ = std::numeric_limits<float>::infinity();
    std::vector<Item> items_;
    std::vector<float> scratch_;
    // sorted mode: dist_[0, kept_) ascending, +inf after (up to span_ = k rounded up to 8)
    std::size_t span_ = 0, kept_ = 0;
    std::array<float, kSortedMax> dist_;
    std::array<std::int64_t, kSortedMax> ids_;
};

// Rearranges v[0, n) so that v[0, k) holds its k smallest values (in no particular order,
// every one <= every value after them), as std::nth_element(v, v + k, v + n) leaves them.
// Quickselect with branch-free partitions: over keys in random order every compare of a
// selection is a coin flip for the branch predictor, and a mispredicted branch costs more
// than the few moves a partition does without branching (the IVF probe choice: the 48
// nearest of 256 lists per query). Values may repeat, but a run of equal values costs a pass
// per value (each pass fixes one place): meant for distinct keys, as the probe keys are.
inline void select_smallest(std::uint64_t* v, std::size_t n, std::size_t k) {
    if (k == 0 || k >= n) return;
    const std::size_t target = k - 1;  // its value goes to v[target], smaller ones before it
    std::size_t lo = 0, hi = n;        // v[target] belongs in [lo, hi)
    while (hi - lo > 16) {
        // the median of the first, middle and last value to v[hi - 1], the minimum to v[lo]
        const std::size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (v[mid] < v[lo]) std::swap(v[mid], v[lo]);
        if (v[last] < v[lo]) std::swap(v[last], v[lo]);
        if (v[mid] < v[last]) std::swap(v[mid], v[last]);
        const std::uint64_t pivot = v[last];
        // [lo, store) < pivot <= [store, i): every value is swapped to store, which advances
        // only past smaller ones (no branch on the compare)
        std::size_t store = lo;
        for (std::size_t i = lo; i < last; ++i) {
            const std::uint64_t x = v[i];
            v[i] = v[store];
            v[store] = x;
            store += x < pivot;
        }
        std::swap(v[store], v[last]);  // the pivot's own place
        if (store == target) return;
        if (target < store)
            hi = store;
        else
            lo = store + 1;
    }
    std::sort(v + lo, v + hi);
}

}  // namespace simdex

namespace simdex {

// Top-k for small non-negative integer distances (Hamming counts): counting instead of
// ordering. A candidate is kept when its distance is under the limit; the limit drops as soon
// as the buckets below it hold k candidates, so there is no heap or selection work per push.
class CountTopK {
   public:
    CountTopK(std::size_t k, std::uint32_t max_distance)
        : k_(k), counts_(static_cast<std::size_t>(max_distance) + 1, 0), limit_(max_distance + 1) {}

    std::uint32_t count_limit() const { return limit_; }  // keep d < limit

    void push(std::uint32_t distance, std::int64_t id) {
        if (distance >= limit_) return;
        if (items_.empty()) items_.reserve(2 * k_ + 64);
        items_.emplace_back(distance, id);
        ++counts_[distance];
        ++kept_;
        while (limit_ > 0 && kept_ - counts_[limit_ - 1] >= k_) {
            kept_ -= counts_[limit_ - 1];
            counts_[limit_ - 1] = 0;
            --limit_;
        }
        // drop dead entries once they are about half the buffer (ties can keep many alive)
        if (items_.size() >= 2 * std::max(k_, kept_) + 64) drop_dead();
    }

    void merge_from(const CountTopK& other) {
        for (const auto& item : other.items_)
            if (item.first < other.limit_) push(item.first, item.second);
    }

    // Ascending by (distance, id); pads to k with (+inf, -1). Counting sort on the distance
    // (every kept distance is under the limit), then ids within each distance.
    void write_sorted(float* distances, std::int64_t* ids) {
        drop_dead();
        std::vector<std::uint32_t> start(limit_ + 1, 0);
        for (const auto& item : items_) ++start[item.first + 1];
        for (std::uint32_t d = 0; d < limit_; ++d) start[d + 1] += start[d];
        std::vector<std::int64_t> sorted_ids(items_.size());
        for (const auto& item : items_) sorted_ids[start[item.first]++] = item.second;
        // start[d] is now the end of distance d's run
        std::size_t i = 0;
        for (std::uint32_t d = 0; d < limit_ && i < k_; ++d) {
            std::size_t begin = d == 0 ? 0 : start[d - 1], end = start[d];
            std::sort(sorted_ids.begin() + static_cast<std::ptrdiff_t>(begin),
                      sorted_ids.begin() + static_cast<std::ptrdiff_t>(end));
            for (std::size_t j = begin; j < end && i < k_; ++j, ++i) {
                distances[i] = static_cast<float>(d);
                ids[i] = sorted_ids[j];
            }
        }
        for (; i < k_; ++i) {
            distances[i] = std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
    }

   private:
    void drop_dead() {
        std::size_t kept = 0;
        for (const auto& item : items_)
            if (item.first < limit_) items_[kept++] = item;
        items_.resize(kept);
    }

    std::size_t k_;
    std::vector<std::uint32_t> counts_;
    std::uint32_t limit_;
    std::size_t kept_ = 0;
    std::vector<std::pair<std::uint32_t, std::int64_t>> items_;
};

}  // namespace simdex
