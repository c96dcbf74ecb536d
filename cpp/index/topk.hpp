// Bounded top-k selection: a max-heap of the k smallest distances seen so far.
// Baseline code only (no ISA flags); used by every index.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace simdex {

class TopK {
   public:
    explicit TopK(std::size_t k) : k_(k) { heap_.reserve(k); }

    // Largest kept distance, or +inf while fewer than k are kept: push only below this.
    float threshold() const {
        return heap_.size() < k_ ? std::numeric_limits<float>::infinity() : heap_.front().first;
    }

    void push(float distance, std::int64_t id) {
        if (heap_.size() < k_) {
            heap_.emplace_back(distance, id);
            std::push_heap(heap_.begin(), heap_.end());
        } else if (distance < heap_.front().first) {
            std::pop_heap(heap_.begin(), heap_.end());
            heap_.back() = {distance, id};
            std::push_heap(heap_.begin(), heap_.end());
        }
    }

    // Scan n distances with ids base + i, pushing those under the threshold.
    void push_range(const float* distances, std::size_t n, std::int64_t base) {
        float limit = threshold();
        for (std::size_t i = 0; i < n; ++i) {
            if (distances[i] < limit) {
                push(distances[i], base + static_cast<std::int64_t>(i));
                limit = threshold();
            }
        }
    }

    std::size_t size() const { return heap_.size(); }
    void clear() { heap_.clear(); }

    // Ascending by (distance, id); pads to k with (+inf, -1).
    void write_sorted(float* distances, std::int64_t* ids) {
        std::sort(heap_.begin(), heap_.end());
        std::size_t i = 0;
        for (; i < heap_.size(); ++i) {
            distances[i] = heap_[i].first;
            ids[i] = heap_[i].second;
        }
        for (; i < k_; ++i) {
            distances[i] = std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
    }

    std::vector<std::pair<float, std::int64_t>>& items() { return heap_; }

   private:
    std::size_t k_;
    std::vector<std::pair<float, std::int64_t>> heap_;
};

}  // namespace simdex
