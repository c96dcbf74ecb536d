// IVF inverted lists that grow per list (see IvfStore in pq.hpp).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "index/pq.hpp"

namespace simdex {

IvfStore::IvfStore(int nbits, std::size_t m, std::size_t nlist)
    : nbits_(nbits), m_(m), nlist_(nlist), lists_(nlist) {
    if (nbits != 8 && nbits != 4) throw std::invalid_argument("nbits must be 8 or 4");
}

void IvfStore::append(const std::int64_t* lists, const std::uint8_t* codes,
                      const std::int64_t* slots, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (lists[i] < 0 || static_cast<std::size_t>(lists[i]) >= nlist_)
            throw std::invalid_argument("list " + std::to_string(lists[i]) + " out of range");
    const std::size_t block_bytes = unit_bytes();
    for (std::size_t i = 0; i < n; ++i) {
        List& list = lists_[static_cast<std::size_t>(lists[i])];
        const std::uint8_t* c = codes + i * m_;
        if (nbits_ == 8) {
            list.codes.insert(list.codes.end(), c, c + m_);
            list.slots.push_back(slots[i]);
        } else {
            const std::size_t r = list.rows % 32;
            if (r == 0) {
                list.codes.resize(list.codes.size() + block_bytes, 0);
                list.slots.resize(list.slots.size() + 32, -1);
            }
            write_block_row(list.codes.data() + list.codes.size() - block_bytes, r, c, m_);
            list.slots[list.slots.size() - 32 + r] = slots[i];
        }
        ++list.rows;
    }
}

IvfLists IvfStore::view() const {
    IvfLists v;
    v.nbits = nbits_;
    v.m = m_;
    v.nlist = nlist_;
    for (const List& list : lists_) {
        v.codes.push_back(list.codes.data());
        v.slots.push_back(list.slots.data());
        v.units.push_back(nbits_ == 8 ? list.rows : (list.rows + 31) / 32);
    }
    return v;
}

std::size_t IvfStore::units() const {
    std::size_t total = 0;
    for (const List& list : lists_) total += nbits_ == 8 ? list.rows : (list.rows + 31) / 32;
    return total;
}

std::size_t IvfStore::entries() const {
    std::size_t total = 0;
    for (const List& list : lists_) total += list.slots.size();
    return total;
}

void IvfStore::flatten(std::uint8_t* codes, std::int64_t* entry_slots, std::int64_t* offsets) const {
    offsets[0] = 0;
    for (std::size_t l = 0; l < nlist_; ++l) {
        const List& list = lists_[l];
        codes = std::copy(list.codes.begin(), list.codes.end(), codes);
        entry_slots = std::copy(list.slots.begin(), list.slots.end(), entry_slots);
        const std::size_t units = nbits_ == 8 ? list.rows : (list.rows + 31) / 32;
        offsets[l + 1] = offsets[l] + static_cast<std::int64_t>(units);
    }
}

void IvfStore::restore(const std::uint8_t* codes, const std::int64_t* entry_slots,
                       const std::int64_t* offsets, std::size_t slot_count) {
    if (offsets[0] != 0) throw std::invalid_argument("IVF-PQ index file: offsets[0] must be 0");
    for (std::size_t l = 0; l < nlist_; ++l)
        if (offsets[l + 1] < offsets[l])
            throw std::invalid_argument("IVF-PQ index file: offsets must be non-decreasing");
    const std::size_t per_unit = nbits_ == 8 ? 1 : 32, bytes = unit_bytes();
    std::vector<List> lists(nlist_);
    for (std::size_t l = 0; l < nlist_; ++l) {
        const std::size_t first = static_cast<std::size_t>(offsets[l]);
        const std::size_t count = static_cast<std::size_t>(offsets[l + 1]) - first;
        List& list = lists[l];
        list.codes.assign(codes + first * bytes, codes + (first + count) * bytes);
        list.slots.assign(entry_slots + first * per_unit, entry_slots + (first + count) * per_unit);
        // Rows fill entries in order: 4-bit padding (-1) only after the last row of a list.
        std::size_t rows = 0;
        for (std::size_t e = 0; e < list.slots.size(); ++e) {
            const std::int64_t s = list.slots[e];
            if (s >= static_cast<std::int64_t>(slot_count) || s < -1 || (s == -1 && nbits_ == 8))
                throw std::invalid_argument("IVF-PQ index file: entry slot " + std::to_string(s) +
                                            " out of range for " + std::to_string(slot_count) + " slots");
            if (s >= 0) {
                if (rows != e) throw std::invalid_argument("IVF-PQ index file: padding inside a list");
                ++rows;
            }
        }
        if (nbits_ == 4 && (rows + 31) / 32 != count)
            throw std::invalid_argument("IVF-PQ index file: a list has empty blocks");
        list.rows = rows;
    }
    lists_ = std::move(lists);
}

std::size_t IvfStore::nbytes() const {
    std::size_t total = 0;
    for (const List& list : lists_) total += list.codes.capacity() + list.slots.capacity() * 8;
    return total;
}

}  // namespace simdex
