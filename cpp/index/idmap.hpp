// The one place that maps storage slots to user ids and back, for every index.
//
//   ids_[slot]   user id stored in a slot, -1 when the slot is free or its row was removed
//   slot_of_     hash map id -> slot of every live id (never a scan)
//   free_        slots whose rows are gone and may be reused by the next add
//
// Every operation is O(1) (amortised) in the number of stored rows: the cost of one add or
// remove does not grow with the index. Not thread-safe by itself: the owning index guards
// it with its reader-writer lock (searches read, add / remove write). The one exception:
// unbind writes ids_[slot] with an atomic store and id_atomic reads it, so an index may
// forget ids while its searches map slots (HnswGraph removes under its shared lock).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace simdex {

class IdMap {
   public:
    static constexpr std::int64_t kNoId = -1;

    std::size_t size() const { return slot_of_.size(); }  // live ids
    std::size_t slots() const { return ids_.size(); }     // slots ever used (live, removed, free)
    std::int64_t next_id() const { return next_id_; }
    void set_next_id(std::int64_t next) { next_id_ = std::max(next_id_, next); }
    std::int64_t id(std::size_t slot) const { return ids_[slot]; }
    // The id of a slot while another thread may unbind it (-1 once unbound).
    std::int64_t id_atomic(std::size_t slot) const {
        return __atomic_load_n(&ids_[slot], __ATOMIC_RELAXED);
    }
    const std::int64_t* ids() const { return ids_.data(); }

    // Slot of a live id, or -1.
    std::int64_t find(std::int64_t id) const {
        auto it = slot_of_.find(id);
        return it == slot_of_.end() ? -1 : static_cast<std::int64_t>(it->second);
    }
    bool contains(std::int64_t id) const { return slot_of_.count(id) != 0; }

    // Throws std::invalid_argument (-> ValueError) naming up to five ids already present or
    // negative; n lookups.
    void check_new(const std::int64_t* ids, std::size_t n) const {
        std::string clash;
        std::size_t found = 0;
        for (std::size_t i = 0; i < n && found < 5; ++i) {
            if (ids[i] < 0) throw std::invalid_argument("ids must be >= 0; got " + std::to_string(ids[i]));
            if (contains(ids[i])) clash += (found++ ? ", " : "") + std::to_string(ids[i]);
        }
        if (found)
            throw std::invalid_argument("ids already in the index: [" + clash +
                                        "]; remove them first or pass new ids");
    }

    // n sequential ids from the next unused one (skipping ids the user chose). The last id,
    // 2**63 - 1, is handed out once; after it the sequence is exhausted (never wraps negative).
    void next_ids(std::int64_t* out, std::size_t n) {
        constexpr std::int64_t last = std::numeric_limits<std::int64_t>::max();
        for (std::size_t i = 0; i < n; ++i) {
            while (next_id_ != last && contains(next_id_)) ++next_id_;
            if (contains(next_id_) || (i > 0 && out[i - 1] == last))
                throw std::invalid_argument("no sequential id is left: the index holds id 2**63 - 1 "
                                            "(9223372036854775807); pass ids= explicitly");
            out[i] = next_id_;
            if (next_id_ != last) ++next_id_;
        }
    }

    // A slot for one new row: the most recently freed one, else a new slot at the end.
    std::uint32_t take_slot() {
        if (!free_.empty()) {
            std::uint32_t s = free_.back();
            free_.pop_back();
            return s;
        }
        ids_.push_back(kNoId);
        return static_cast<std::uint32_t>(ids_.size() - 1);
    }
    // The slots the next n take_slot() calls return, without taking them.
    void peek_slots(std::size_t n, std::int64_t* out) const {
        std::size_t f = free_.size(), end = ids_.size();
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int64_t>(f ? free_[--f] : end++);
    }
    // Undoes next_ids() of an add that failed (before binding, or after its ids were unbound
    // again): the sequence goes back to `next`, its value before that add. Only while no
    // other add ran since (indexes serialise adds).
    void rewind_next_id(std::int64_t next) { next_id_ = next; }
    // A new slot at the end, even when freed ones exist (indexes that append rows).
    std::uint32_t append_slot() {
        ids_.push_back(kNoId);
        return static_cast<std::uint32_t>(ids_.size() - 1);
    }
    // Gives back slots taken but not filled (an interrupted add), newest last.
    void give_back(std::uint32_t slot) {
        ids_[slot] = kNoId;
        if (slot + 1 == ids_.size()) {
            ids_.pop_back();
        } else {
            free_.push_back(slot);
        }
    }

    void bind(std::uint32_t slot, std::int64_t id) {
        ids_[slot] = id;
        slot_of_[id] = slot;
        if (id >= next_id_) next_id_ = id == std::numeric_limits<std::int64_t>::max() ? id : id + 1;
    }

    // Forgets a live id (its slot keeps its row until release); returns the slot or -1.
    std::int64_t unbind(std::int64_t id) {
        auto it = slot_of_.find(id);
        if (it == slot_of_.end()) return -1;
        std::uint32_t slot = it->second;
        slot_of_.erase(it);
        __atomic_store_n(&ids_[slot], kNoId, __ATOMIC_RELAXED);  // see id_atomic
        return slot;
    }

    // The slot may be reused by the next add.
    void release(std::uint32_t slot) {
        ids_[slot] = kNoId;
        free_.push_back(slot);
    }

    // The row of slot `from` moved to slot `to` (compaction by moving the last row).
    void move(std::uint32_t from, std::uint32_t to) {
        std::int64_t id = ids_[from];
        ids_[to] = id;
        ids_[from] = kNoId;
        if (id >= 0) slot_of_[id] = to;
    }
    void pop_last() { ids_.pop_back(); }

    // Restore: one id per slot (-1 = free or removed); live ids must be unique.
    void restore(const std::int64_t* ids, std::size_t n, const std::uint8_t* in_use) {
        ids_.assign(ids, ids + n);
        slot_of_.clear();
        slot_of_.reserve(n);
        free_.clear();
        for (std::size_t s = n; s-- > 0;) {
            if (ids[s] < 0) {
                ids_[s] = kNoId;
                if (in_use == nullptr || !in_use[s]) free_.push_back(static_cast<std::uint32_t>(s));
                continue;
            }
            if (!slot_of_.emplace(ids[s], static_cast<std::uint32_t>(s)).second)
                throw std::invalid_argument("index file: id " + std::to_string(ids[s]) + " appears twice");
            if (ids[s] >= next_id_)  // id 2**63 - 1 exhausts the sequence (no overflow)
                next_id_ = ids[s] == std::numeric_limits<std::int64_t>::max() ? ids[s] : ids[s] + 1;
        }
    }

    // Live ids in slot order.
    void live_ids(std::int64_t* out) const {
        std::size_t j = 0;
        for (std::int64_t id : ids_)
            if (id >= 0) out[j++] = id;
    }

    std::size_t nbytes() const {
        return ids_.capacity() * 8 + free_.capacity() * 4 + slot_of_.size() * 32 +
               slot_of_.bucket_count() * 8;
    }

   private:
    std::vector<std::int64_t> ids_;
    std::unordered_map<std::int64_t, std::uint32_t> slot_of_;
    std::vector<std::uint32_t> free_;
    std::int64_t next_id_ = 0;
};

// Allowed ids for a search: none; a byte mask indexed by id shared by every query (tested
// per visited slot through the slot's id: no preparation at all); or lists of ids, one
// shared or one per query (CSR: the ids of list i are ids[offsets[i] .. offsets[i + 1])),
// mapped to slots through the hash map in O(len(list)).
struct IdFilter {
    const std::int64_t* ids = nullptr;
    const std::int64_t* offsets = nullptr;
    std::size_t lists = 0;  // 0: no id lists
    const std::uint8_t* id_mask = nullptr;  // by id, nonzero = allowed
    std::size_t id_mask_len = 0;
    bool active() const { return lists != 0 || id_mask != nullptr; }
    std::size_t list_of(std::size_t query) const { return lists == 1 ? 0 : query; }
};

// Whether a slot may be returned: by a mask over slots, or by its id in a mask over ids
// (free slots and tombstones carry id -1 and are never allowed).
struct SlotFilter {
    const std::uint8_t* slot_mask = nullptr;
    const std::int64_t* slot_ids = nullptr;
    const std::uint8_t* id_mask = nullptr;
    std::uint64_t id_mask_len = 0;
    bool allows(std::uint32_t slot) const {
        if (slot_mask) return slot_mask[slot] != 0;
        // -1 (free, tombstone) is huge; atomic: an HNSW remove may unbind the slot meanwhile
        const std::uint64_t id = static_cast<std::uint64_t>(__atomic_load_n(&slot_ids[slot], __ATOMIC_RELAXED));
        return id < id_mask_len && id_mask[id] != 0;
    }
};

// A per-thread mask over slots built from one filter list in O(len(list)) (and cleared the
// same way): `allow[s]` is 1 for the live slots of allowed ids, `slots` lists them.
struct SlotMask {
    std::vector<std::uint8_t> allow;
    std::vector<std::uint32_t> slots;
    std::size_t built = static_cast<std::size_t>(-1);  // list index currently in allow

    void clear() {
        for (std::uint32_t s : slots) allow[s] = 0;
        slots.clear();
        built = static_cast<std::size_t>(-1);
    }
    void build(const IdMap& map, const IdFilter& f, std::size_t list) {
        if (built == list) return;
        clear();
        if (allow.size() < map.slots()) allow.resize(map.slots() + map.slots() / 4 + 16, 0);
        for (std::int64_t i = f.offsets[list]; i < f.offsets[list + 1]; ++i) {
            std::int64_t s = map.find(f.ids[i]);
            if (s >= 0 && !allow[s]) {
                allow[s] = 1;
                slots.push_back(static_cast<std::uint32_t>(s));
            }
        }
        built = list;
    }
    // From a mask by id (the exact-scan path of a small allowed set): O(len(mask)).
    void build_from_mask(const IdMap& map, const std::uint8_t* id_mask, std::size_t len) {
        clear();
        if (allow.size() < map.slots()) allow.resize(map.slots() + map.slots() / 4 + 16, 0);
        for (std::size_t id = 0; id < len; ++id) {
            if (!id_mask[id]) continue;
            std::int64_t s = map.find(static_cast<std::int64_t>(id));
            if (s >= 0) {
                allow[s] = 1;
                slots.push_back(static_cast<std::uint32_t>(s));
            }
        }
        built = static_cast<std::size_t>(-2);
    }
};

// SlotMasks for filtered scans, reused across searches (no allocation in steady state):
// lease() hands one out (a new one when none is free) and takes it back, cleared, when the
// lease ends. Thread-safe.
class SlotMaskPool {
   public:
    class Lease {
       public:
        explicit Lease(const SlotMaskPool& pool) : pool_(pool), mask_(pool.take()) {}
        ~Lease() { pool_.give(std::move(mask_)); }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        SlotMask* operator->() const { return mask_.get(); }
        SlotMask& operator*() const { return *mask_; }

       private:
        const SlotMaskPool& pool_;
        std::unique_ptr<SlotMask> mask_;
    };
    Lease lease() const { return Lease(*this); }

   private:
    std::unique_ptr<SlotMask> take() const {
        std::lock_guard<std::mutex> guard(mutex_);
        if (free_.empty()) return std::unique_ptr<SlotMask>(new SlotMask());
        std::unique_ptr<SlotMask> m = std::move(free_.back());
        free_.pop_back();
        return m;
    }
    void give(std::unique_ptr<SlotMask> m) const {
        m->clear();
        std::lock_guard<std::mutex> guard(mutex_);
        free_.push_back(std::move(m));
    }
    mutable std::mutex mutex_;
    mutable std::vector<std::unique_ptr<SlotMask>> free_;
};

// Forgets ids (unknown ones ignored) and clears their slots' alive flags (indexes whose
// removed rows stay as tombstones behind an alive mask); returns how many were removed.
inline std::size_t tombstone_ids(IdMap& map, std::vector<std::uint8_t>& alive, const std::int64_t* ids,
                                 std::size_t n) {
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t slot = map.unbind(ids[i]);
        if (slot < 0) continue;
        alive[static_cast<std::size_t>(slot)] = 0;
        ++count;
    }
    return count;
}

// Nonzero bytes of a mask.
inline std::size_t count_allowed(const std::uint8_t* mask, std::size_t len) {
    std::size_t count = 0;
    for (std::size_t i = 0; i < len; ++i) count += mask[i] != 0;
    return count;
}

}  // namespace simdex
