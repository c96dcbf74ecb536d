// FlatIndex core: dense rows, id map, exact scans through exact_search (see flat.hpp).
#include "index/flat.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "index/exact.hpp"

namespace simdex {

FlatCore::FlatCore(const KernelTable& table, const StoreSpec& spec) : table_(&table), spec_(spec) {
    if ((spec.storage == Storage::bits) != (spec.metric == Metric::hamming))
        throw std::invalid_argument("metric 'hamming' goes with bit codes and only with them");
    if (spec.storage == Storage::u8) {
        lo_.assign(spec.dim, 0.0f);
        scale_.assign(spec.dim, 0.0f);
        spec_.lo = lo_.data();
        spec_.scale = scale_.data();
    }
}

void FlatCore::set_ranges(const float* lo, const float* scale) {
    if (spec_.storage != Storage::u8) throw std::invalid_argument("set_ranges: only for int8 storage");
    if (map_.slots() != 0) throw std::invalid_argument("set_ranges: the index already holds vectors");
    std::copy(lo, lo + spec_.dim, lo_.begin());
    std::copy(scale, scale + spec_.dim, scale_.begin());
}

void FlatCore::add(const std::uint8_t* rows, const std::int64_t* ids, std::int64_t* assigned,
                   std::size_t n) {
    if (ids) {
        map_.check_new(ids, n);
    } else {
        map_.next_ids(assigned, n);
        ids = assigned;
    }
    const std::size_t start = map_.slots();
    if (rows_.capacity() < (start + n) * spec_.row_bytes)
        rows_.reserve(std::max((start + n) * spec_.row_bytes, rows_.capacity() * 3 / 2));
    rows_.insert(rows_.end(), rows, rows + n * spec_.row_bytes);
    for (std::size_t i = 0; i < n; ++i) map_.bind(map_.take_slot(), ids[i]);
}

std::size_t FlatCore::remove(const std::int64_t* ids, std::size_t n) {
    std::size_t count = 0;
    const std::size_t rb = spec_.row_bytes;
    for (std::size_t i = 0; i < n; ++i) {
        std::int64_t slot = map_.unbind(ids[i]);
        if (slot < 0) continue;
        const std::size_t last = map_.slots() - 1;
        if (static_cast<std::size_t>(slot) != last) {
            std::memcpy(rows_.data() + static_cast<std::size_t>(slot) * rb, rows_.data() + last * rb, rb);
            map_.move(static_cast<std::uint32_t>(last), static_cast<std::uint32_t>(slot));
        }
        map_.pop_last();
        rows_.resize(last * rb);
        ++count;
    }
    return count;
}

void FlatCore::search(const void* queries, std::size_t nq, std::size_t k, const IdFilter& filter,
                      std::size_t threads, float* out_distances, std::int64_t* out_ids) const {
    const std::size_t n = map_.slots();
    const std::size_t qb = query_bytes(spec_);
    const auto* q = static_cast<const std::uint8_t*>(queries);
    if (n == 0) {
        std::fill(out_distances, out_distances + nq * k, std::numeric_limits<float>::infinity());
        std::fill(out_ids, out_ids + nq * k, -1);
        return;
    }
    if (!filter.active()) {
        exact_search(*table_, spec_, rows_.data(), n, q, nq, k, nullptr, threads, out_distances, out_ids);
    } else {
        SlotMaskPool::Lease mask = masks_.lease();
        if (filter.id_mask) {
            // The scan reads every row anyway: the slot mask costs one id test per row.
            SlotFilter by_id{nullptr, map_.ids(), filter.id_mask, filter.id_mask_len};
            mask->allow.resize(std::max(mask->allow.size(), n));
            for (std::size_t s = 0; s < n; ++s) mask->allow[s] = by_id.allows(static_cast<std::uint32_t>(s));
            exact_search(*table_, spec_, rows_.data(), n, q, nq, k, mask->allow.data(), threads,
                         out_distances, out_ids);
            std::fill(mask->allow.begin(), mask->allow.begin() + static_cast<std::ptrdiff_t>(n), 0);
        } else if (filter.lists == 1) {
            mask->build(map_, filter, 0);
            exact_search(*table_, spec_, rows_.data(), n, q, nq, k, mask->allow.data(), threads,
                         out_distances, out_ids);
        } else {
            for (std::size_t i = 0; i < nq; ++i) {
                mask->build(map_, filter, i);
                exact_search(*table_, spec_, rows_.data(), n, q + i * qb, 1, k, mask->allow.data(),
                             threads, out_distances + i * k, out_ids + i * k);
            }
        }
    }
    for (std::size_t i = 0; i < nq * k; ++i)
        if (out_ids[i] >= 0) out_ids[i] = map_.id(static_cast<std::size_t>(out_ids[i]));
}

void FlatCore::restore(const std::uint8_t* rows, const std::int64_t* ids, std::size_t n,
                       std::int64_t next_id) {
    if (map_.slots() != 0) throw std::invalid_argument("restore: the index is not empty");
    for (std::size_t i = 0; i < n; ++i)
        if (ids[i] < 0) throw std::invalid_argument("flat index file: negative id " + std::to_string(ids[i]));
    map_.restore(ids, n, nullptr);  // throws on duplicated ids
    map_.set_next_id(next_id);
    rows_.assign(rows, rows + n * spec_.row_bytes);
}

}  // namespace simdex
