// simdex._core.IdTable: the id <-> slot map (IdMap) of indexes whose rows or codes are still
// laid out by Python (LeanVec, Binary). The owning index serialises writes
// with its reader-writer lock; this object adds a mutex so each call is atomic on its own.
// In a header so that other bindings (the LeanVec pipeline) can take it as an argument.
#pragma once
#include <cstring>
#include <mutex>
#include <vector>

#include "bindings_common.hpp"

namespace simdex {

class IdTable {
   public:
    // ids: (n,) new unique ids or None (sequential). reuse: take freed slots first.
    // Returns (ids (n,), slots (n,)); nothing changes when the ids clash.
    py::tuple add(const py::object& ids, std::size_t n, bool reuse) {
        IdArray out_ids(n), out_slots(n);
        const std::int64_t* given = nullptr;
        if (!ids.is_none()) {
            out_ids = ids.cast<IdArray>();
            given = typed<std::int64_t>(out_ids, n, "ids");
        }
        bind(given, out_ids.mutable_data(), out_slots.mutable_data(), n, reuse);
        return py::make_tuple(out_ids, out_slots);
    }
    // The C++ side of add (no GIL needed): given ids (nullptr = sequential, written to
    // out_ids; else out_ids may alias given), their new slots.
    void bind(const std::int64_t* given, std::int64_t* out_ids, std::int64_t* slots, std::size_t n, bool reuse) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (given) {
            map_.check_new(given, n);
            if (out_ids != given) std::copy(given, given + n, out_ids);
        } else {
            map_.next_ids(out_ids, n);
        }
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t s = reuse ? map_.take_slot() : map_.append_slot();
            map_.bind(s, out_ids[i]);
            slots[i] = s;
        }
    }

    std::int64_t next_id() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return map_.next_id();
    }
    // Undoes the bind() of an add that failed: forgets its ids and puts the sequence back to
    // `next_before` (next_id() before the bind), so sequential ids skip no numbers.
    void undo_add(const std::int64_t* ids, std::size_t n, bool reuse, std::int64_t next_before) {
        unbind(ids, n, reuse);
        std::lock_guard<std::mutex> lock(mutex_);
        map_.rewind_next_id(next_before);
    }

    // Forgets ids (unknown ones ignored); returns the slots they held. reuse: the slots go
    // to the free list (the caller may overwrite them), else they stay dead.
    IdArray remove(const py::array& ids, bool reuse) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        std::vector<std::int64_t> slots = unbind(id_ptr, n, reuse);
        IdArray out(slots.size());
        std::copy(slots.begin(), slots.end(), out.mutable_data());
        return out;
    }
    // The C++ side of remove (no GIL needed).
    std::vector<std::int64_t> unbind(const std::int64_t* ids, std::size_t n, bool reuse) {
        std::vector<std::int64_t> slots;
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::size_t i = 0; i < n; ++i) {
            std::int64_t s = map_.unbind(ids[i]);
            if (s < 0) continue;
            if (reuse) map_.release(static_cast<std::uint32_t>(s));
            slots.push_back(s);
        }
        return slots;
    }

    // User ids of slots (any shape; -1 stays -1).
    IdArray ids_of(const py::array& slots) {
        std::size_t n = static_cast<std::size_t>(slots.size());
        const std::int64_t* s = typed<std::int64_t>(slots, n, "slots");
        std::vector<py::ssize_t> shape(slots.shape(), slots.shape() + slots.ndim());
        IdArray out(shape);
        std::copy(s, s + n, out.mutable_data());
        map_slots(out.mutable_data(), n);
        return out;
    }

    // Slots of live ids, in the order given; missing ids are dropped.
    IdArray slots_of(const py::array& ids) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        std::vector<std::int64_t> slots;
        slots.reserve(n);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (std::size_t i = 0; i < n; ++i) {
                std::int64_t s = map_.find(id_ptr[i]);
                if (s >= 0) slots.push_back(s);
            }
        }
        IdArray out(slots.size());
        std::copy(slots.begin(), slots.end(), out.mutable_data());
        return out;
    }

    // (slots,) uint8 mask for a scan: live slots allowed by the filter (see filter_arg), or
    // every live slot without one; None when there is no filter and no dead slot.
    py::object scan_mask(const py::object& filter_ids, const py::object& filter_offsets,
                         const py::object& filter_mask) {
        IdFilter f = filter_arg(filter_ids, filter_offsets, filter_mask, 1);
        std::lock_guard<std::mutex> lock(mutex_);
        const std::size_t total = map_.slots();
        if (!f.active() && map_.size() == total) return py::none();
        py::array_t<std::uint8_t> out(total);
        std::uint8_t* m = out.mutable_data();
        std::fill(m, m + total, 0);
        if (f.lists) {
            for (std::int64_t i = f.offsets[0]; i < f.offsets[1]; ++i) {
                std::int64_t s = map_.find(f.ids[i]);
                if (s >= 0) m[s] = 1;
            }
        } else {
            SlotFilter by{nullptr, map_.ids(), f.id_mask, f.id_mask_len};
            for (std::size_t s = 0; s < total; ++s) m[s] = f.id_mask ? by.allows(static_cast<std::uint32_t>(s)) : map_.id(s) >= 0;
        }
        return std::move(out);
    }

    // Slot -> id in place (-1 stays -1): the C++ side of ids_of.
    void map_slots(std::int64_t* slots, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::size_t total = map_.slots();
        for (std::size_t i = 0; i < n; ++i)
            slots[i] = slots[i] >= 0 && static_cast<std::size_t>(slots[i]) < total
                           ? map_.id(static_cast<std::size_t>(slots[i])) : -1;
    }

    bool contains(std::int64_t id) {
        std::lock_guard<std::mutex> lock(mutex_);
        return map_.contains(id);
    }
    std::size_t size() {
        std::lock_guard<std::mutex> lock(mutex_);
        return map_.size();
    }
    std::size_t slot_count() {
        std::lock_guard<std::mutex> lock(mutex_);
        return map_.slots();
    }
    IdArray ids() {
        std::lock_guard<std::mutex> lock(mutex_);
        IdArray out(map_.size());
        map_.live_ids(out.mutable_data());
        return out;
    }
    // (ids per slot (slots,) int64, -1 = free or dead; next id)
    py::tuple state() {
        std::lock_guard<std::mutex> lock(mutex_);
        IdArray out(map_.slots());
        if (map_.slots()) std::memcpy(out.mutable_data(), map_.ids(), map_.slots() * 8);
        return py::make_tuple(out, map_.next_id());
    }
    // ids per slot as saved; reuse: free slots (-1) may be reused by later adds.
    void restore(const py::array& ids, std::int64_t next_id, bool reuse) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        for (std::size_t i = 0; i < n; ++i)
            if (id_ptr[i] < -1) throw std::invalid_argument("index file: id " + std::to_string(id_ptr[i]) + " is negative");
        std::vector<std::uint8_t> dead(n, 1);
        std::lock_guard<std::mutex> lock(mutex_);
        map_ = IdMap();
        map_.restore(id_ptr, n, reuse ? nullptr : dead.data());
        map_.set_next_id(next_id);
    }
    std::size_t nbytes() {
        std::lock_guard<std::mutex> lock(mutex_);
        return map_.nbytes();
    }

   private:
    IdMap map_;
    mutable std::mutex mutex_;
};

}  // namespace simdex
