// HNSW graph (Malkov & Yashunin, 2016/2018) over stored rows of any storage type.
//
// Structure
//   * Every node has a level L drawn as floor(-ln(U) / ln(M)) from a counter-based RNG
//     (seed, insertion number): the same seed and insertion order give the same levels.
//   * Level 0: up to M0 = 2M links; levels 1..L: up to M links.
//   * Search: greedy descent (ef = 1) from the entry point through the upper levels, then a
//     best-first search with a dynamic list of ef candidates on level 0.
//   * Insertion links a new node to M neighbours chosen with the neighbour-selection
//     heuristic (keep a candidate only if it is closer to the new node than to every
//     neighbour kept so far); reverse links that overflow a list re-run the heuristic.
//
// Memory layout
//   blocks: (capacity, block_bytes) uint8, one block per slot, like hnswlib (in memory a graph
//   over codes puts each slot's neighbour code block before its node block: stride_ below):
//       [0, row_bytes)                        the stored row (vector or packed code)
//       [links_offset, links_offset + 4)      u32 number of level-0 links
//       [links_offset + 4, + 4 * M0)          u32 neighbour slots
//     With external rows (a RerankRows, e.g. a memory-mapped file; see the constructor) a
//     block holds no row (links_offset = 0) and row(slot) reads rows (slot_count, row_bytes)
//     from that store instead: rows_ / row_stride_ name where rows are in either case, so
//     row() is the same two loads and a multiply-add in both (no branch per row access).
//     block_bytes is rounded up to 64 for rows of >= 256 bytes so every vector starts on a
//     cache line (the buffer itself is 64-byte aligned; from 4 MiB on it is 2 MiB aligned
//     and advised as transparent huge pages, so random row reads do not each miss the TLB).
//   upper[slot]: (L, 1 + M) u32 for levels 1..L: count, then M neighbour slots.
//   levels[slot]: int32 level, -1 = free slot (never used, or removed and unlinked).
//
// Ids: the graph owns the id <-> slot map (IdMap): add takes user ids (or assigns
// sequential ones), results carry user ids, filters name ids.
//
// Concurrency
//   * add(): nodes are inserted in parallel on our thread pool. A node is searched for on
//     every level first, then all its link lists are written under its lock, and only then
//     do other nodes link to it (reverse links): no node is reachable before its lists are
//     complete, and no list of a reachable node is overwritten by its own insert (which
//     would erase reverse links that other threads added meanwhile). Each link list is
//     guarded by a one-byte spin lock, the entry point by a mutex. threads = 1 is
//     deterministic.
//   * search() is const and may run from many threads at once, also while nodes are being
//     inserted (insert_nodes), as in hnswlib: it reads link lists without locks (every entry
//     it can see is a valid slot whose row is written), sizes its visited set by capacity,
//     and reads the entry point and top level as one atomic word. The binding holds its
//     reader-writer lock exclusively for begin_add / end_add (growth, ids), compact and
//     restore, and shared for searches, insert_nodes and remove.
//   * remove() runs beside searches and inserts (a service's one-row deletes never wait
//     for running searches): the id map's hash map is guarded by ids_mutex_ (remove takes
//     it alone; filter preparation, id lookups and snapshots share it), the slot's id and
//     alive flag are cleared with atomic stores, and a search maps its result slots through
//     IdMap::id_atomic, dropping a slot whose id went meanwhile (so a result is either as
//     before or as after the remove, never a hole).
//   * Per-thread scratch (visited set with epoch counters, heaps, buffers, filter masks)
//     comes from a pool so a search allocates nothing in steady state.
//
// Memory access: expanding a node first prefetches every unvisited neighbour's whole row
// (line 0 with the L1 hint, the rest with the L2 hint) so all their misses overlap; the
// search is bound by memory latency, not by the distance arithmetic.
//
// Removal is a tombstone: remove(id) forgets the id and clears the node's alive flag in
// O(1); searches still walk through the node but never return it. compact() (run by
// remove once tombstones exceed kHnswCompactFraction of the live nodes) unlinks them:
// every live node that pointed to a removed node re-selects its links (heuristic) from its
// remaining links plus the removed node's links, then the slots become free and are reused
// by later adds.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "index/idmap.hpp"
#include "index/rabitq.hpp"
#include "index/rerank.hpp"
#include "index/scorer.hpp"
#include "index/topk.hpp"

namespace simdex {

// Below this fraction of live nodes allowed by a filter, search scans the allowed rows
// exactly instead of walking the graph (a walk would visit ~1/fraction excluded nodes per
// useful one; an exact scan of 3% of the rows costs about as much as an ef=100 walk on 60k).
constexpr double kHnswExactFilterFraction = 0.03;
// remove() unlinks tombstoned nodes once they exceed this fraction of the live nodes (and
// kHnswCompactMin): the O(n) repair pass is paid once per that many removals.
constexpr double kHnswCompactFraction = 0.1;
constexpr std::size_t kHnswCompactMin = 64;
// Graph over codes: an unexpanded candidate is re-ranked only if its estimate minus this many
// times its error factor (RaBitQ's bound at eps0, about erf(1.9 / sqrt 2) = 94% two-sided)
// can still beat the k-th exact distance found.
constexpr double kHnswCodeBoundEps = 1.9;

struct HnswWorker;

// Graph over compressed codes (storage "rabitq"; SymphonyQG, SIGMOD 2025): every node has a
// RaBitQ code (own), and keeps the codes of its level-0 neighbours in link order beside its
// link list, so expanding a node reads one contiguous block instead of one row per neighbour:
//   own:        (capacity, code_bytes) uint8, the node's RaBitQ row (planes + factors)
//   neighbours: (M0, code_bytes) uint8 per node, in front of its node block (stride_ below),
//               neighbours[s, i] = own[links(s, 0)[i]]
// The graph is the float32 graph, built with exact distances (the rows stay for exact
// scoring). Searches descend the upper levels on the nodes' own codes when they are 1-bit
// fast-scan codes (estimate_own: popcounts of the sign plane against the query's level
// planes, the same integer sum as the nibble tables, 60 bytes read per node at d = 384 instead
// of a 1.5 kB row; level 0 starts from where it ends, with its exact distance), on exact
// distances otherwise. Level 0, the window W = max(ef, k):
//   * fast-scan codes (bits = 1), no filter and no tombstones: walk_codes_pool, after
//     SymphonyQG: a window of the W best candidates, keyed by estimate until expanded; the
//     node being expanded gets its exact distance (its row is prefetched with its links and
//     block) and moves to its exact rank; candidates outside the window whose lower bound
//     (estimate - kHnswCodeBoundEps x error factor) can beat the k-th exact distance go to a
//     tail, of which the best max(rerank_k, k) - W are scored exactly at the end;
//   * otherwise (filter, tombstones, bits > 1): walk_codes, two heaps as the filtered float
//     walk, every allowed estimate offered to a buffer of max(rerank_k, k) re-ranked exactly.
// The query side of the fast-scan walk is float32 (prepare_code_query: Hadamard rotation as
// 4-float vectors, quantised levels, nibble tables), the same code on every tier; the
// estimates are exact integer sums from the kernel, so the walk is the same on every tier.
// Blocks follow their link lists: rewritten under the node's lock whenever its level-0 list
// changes; a search may read a block while it is rewritten (a wrong estimate for one
// neighbour: the walk may take a worse path, returned distances stay exact).
//
// bits = 1 (query levels small enough for 8-bit nibble tables and 16-bit sums): the
// neighbour blocks hold the sign planes in the PQ 4-bit fast-scan layout (kernels/pq/pq.hpp;
// a sub-space = 4 sign bits, so byte p of a sign plane is exactly pair p of the layout), all
// neighbours of a node are scored in one fastscan1_u4 call (one query; the four lookups of a
// group added as bytes, table entries <= 4 x 15 = 60; else fastscan_u4) against the query's
// integer nibble tables T_j[c] = sum of the quantised query levels of the set bits of c
// (exact integer sums, the same on every tier), and the neighbours' factors follow the codes
// in the same node block, one array per factor so the 32 estimates of a block are one
// vectorised loop:
//   a node's neighbour block (node_bytes) = codes (blocks, D / 8, 32) uint8
//               (blocks = ceil(M0 / 32)), then factors (F, blocks * 32) float32: the 1-bit
//               scale, the popcount of the sign plane, and (l2 only, F = 3) ||r||^2
// Otherwise the blocks hold whole RaBitQ rows, scored one by one (RaBitQ::distance).
// A node's neighbour block sits right before its node block, in the same allocation (see
// HnswGraph: codes_front_): expanding a node reads its neighbours' codes, then its own row and
// links, as one contiguous run of memory. Measured on a Zen 4 (60k x 384, ef=20, both builds
// in one process: bench/ab_builds.py): 1.09-1.13x the QPS of the blocks in an array of their
// own (the walk waits on memory: bench/RESULTS.md section 13).
struct GraphCodes {
    RaBitQ quantizer;
    Metric metric = Metric::l2;
    std::vector<float> centre;  // (dim,) or empty (= 0)
    std::size_t code_bytes = 0;
    bool fastscan = false;
    bool fastscan_bytes = false;  // table entries <= 63: the one-query kernel sums lookups as bytes
    std::size_t m4 = 0, blocks = 0;  // fast-scan: D / 4 sub-spaces; blocks of 32 per node
    std::size_t node_bytes = 0;      // bytes of one node's neighbour block
    std::size_t factors_offset = 0;  // fast-scan: where a node block's factors start
    std::size_t factor_count = 0;    // fast-scan: F above
    std::vector<std::uint8_t> own;
    // Hadamard rotation in float32 for queries: the quantizer's signs (kRounds, D), each
    // round's window already multiplied by 1 / sqrt(h) (empty for a dense rotation)
    std::vector<float> rotation_signs;
    std::size_t rotation_half = 0;
    const float* centre_ptr() const { return centre.empty() ? nullptr : centre.data(); }
};

// (distance to the query, slot); ordered by distance, then slot (deterministic ties).
struct HnswCandidate {
    float distance;
    std::uint32_t slot;
};

class HnswGraph {
   public:
    static constexpr std::uint32_t kNone = 0xffffffffu;

    // rows: nullptr = rows inside the node blocks (RAM); else float32 rows of the graph's
    // metric and dim kept in that store (RAM or a memory-mapped file) by slot: row s = the
    // vector of slot s, written by begin_add (store.put), read by builds, walks and re-ranks.
    // The graph is its only writer; it may already hold the rows of a saved graph (restore).
    HnswGraph(const KernelTable& table, const StoreSpec& spec, std::size_t M,
              std::size_t ef_construction, std::uint64_t seed,
              std::shared_ptr<RerankRows> rows = nullptr);
    ~HnswGraph();
    HnswGraph(const HnswGraph&) = delete;
    HnswGraph& operator=(const HnswGraph&) = delete;

    // int8 storage: copies the (dim,) ranges; only while empty.
    void set_ranges(const float* lo, const float* scale);
    // int8 storage with an inner-product metric: round queries (and rows used as queries
    // while building) to int8 as well, so distances are integer dot products (VNNI).
    // Distances become approximate (about 1/254 of the largest scaled query component per
    // term): meant for graphs whose results are re-ranked. Only while empty.
    void set_int8_queries(bool on);
    bool int8_queries() const { return scorer_.int8_queries(); }

    // Adding, in three steps so that searches run during the long middle one.
    // rows: (n, row_bytes) stored rows; ids: (n,) new user ids, unique, not in the graph
    // (checked before anything changes), nullptr = assign sequential ids into assigned (n,);
    // order: (n,) permutation, rows are inserted as order[0], order[1], ... (nullptr = 0..n-1).
    //   begin_add (exclusive): checks ids, takes slots, grows storage, writes rows, binds ids;
    //   insert_nodes (shared with searches and other inserts): links the nodes;
    //   end_add (exclusive): frees the slots of nodes an interrupt left uninserted (only
    //   needed when insert_nodes threw).
    struct PendingAdd {
        std::vector<std::uint32_t> slots;
        std::vector<std::int64_t> ids;
        std::vector<std::int64_t> order;  // empty = row order
        std::uint64_t first = 0;          // insertion number of the first row (levels)
    };
    PendingAdd begin_add(const std::uint8_t* rows, const std::int64_t* ids, std::int64_t* assigned,
                         const std::int64_t* order, std::size_t n);
    void insert_nodes(const PendingAdd& pending, std::size_t threads);
    void end_add(const PendingAdd& pending);

    // Tombstones the given ids (unknown ids are ignored); returns how many were removed.
    // Safe beside searches and insert_nodes (shared lock). Then, when compact_due(), the
    // caller compacts under the exclusive lock (see kHnswCompactFraction).
    std::size_t remove(const std::int64_t* ids, std::size_t n);
    bool compact_due() const;
    // Unlinks every tombstoned node and frees its slot; returns how many.
    std::size_t compact(std::size_t threads);

    // queries: (nq, dim) float32, or (nq, row_bytes) codes for bits storage; normalised
    //          here first when normalize_queries (cosine).
    // filter:  allowed user ids (one list for every query or one per query), or inactive.
    // out:     distances (nq, k) float32 ascending, user ids (nq, k) int64, padded (+inf, -1).
    // buffered: when k > ef, keep the search window at ef and return the k best of every
    //           node whose distance was computed (a candidate buffer larger than the window,
    //           for re-ranking pipelines); otherwise the window is max(ef, k).
    void search(const void* queries, std::size_t nq, std::size_t k, std::size_t ef,
                const IdFilter& filter, bool normalize_queries, std::size_t threads,
                float* out_distances, std::int64_t* out_ids, bool buffered = false,
                std::size_t code_buffer = 0) const;

    // Graph over codes (see GraphCodes): only while empty, float32 rows, not hamming.
    // centre: (dim,) or nullptr. Searches then walk level 0 on codes; code_buffer (search's
    // argument, the Python rerank_k; 0 = 2 * max(ef, k)) bounds the candidates scored exactly.
    void enable_codes(const RaBitQ& quantizer, const float* centre);
    const GraphCodes* codes() const { return codes_.get(); }

    // ---- state ------------------------------------------------------------------------
    std::size_t slot_count() const { return slot_count_; }
    // f(idmap) with the id map steady (no remove meanwhile): lookups, id lists, snapshots.
    template <class F>
    auto with_ids(F f) const {
        std::shared_lock<std::shared_mutex> lock(ids_mutex_);
        return f(idmap_);
    }
    std::size_t live_count() const {
        std::shared_lock<std::shared_mutex> lock(ids_mutex_);
        return idmap_.size();
    }
    std::size_t tombstones() const { return tombstones_.load(std::memory_order_relaxed); }
    std::shared_lock<std::shared_mutex> lock_ids() const { return std::shared_lock<std::shared_mutex>(ids_mutex_); }
    const IdMap& idmap() const { return idmap_; }
    void set_next_id(std::int64_t next) { idmap_.set_next_id(next); }
    std::size_t capacity() const { return capacity_; }
    std::size_t block_bytes() const { return block_bytes_; }
    std::size_t M() const { return M_; }
    std::size_t ef_construction() const { return ef_construction_; }
    std::uint64_t seed() const { return seed_; }
    std::uint64_t insert_count() const { return insert_count_; }
    std::uint32_t entry() const { return entry_; }
    int max_level() const { return max_level_; }
    const StoreSpec& spec() const { return spec_; }
    std::size_t nbytes() const;

    // The node blocks of slots [0, slot_count) into out (slot_count, block_bytes) (a file's layout).
    void copy_blocks(std::uint8_t* out) const;
    const std::int32_t* levels() const { return levels_.data(); }
    bool alive(std::uint32_t slot) const { return alive_[slot] != 0; }
    const std::uint8_t* row(std::uint32_t slot) const {
        return rows_ + static_cast<std::size_t>(slot) * row_stride_;
    }
    // The external row store (nullptr: rows in the blocks).
    const RerankRows* external_rows() const { return external_.get(); }
    // (count, links...) of a slot at a level; level 0 from the block, others from upper_.
    const std::uint32_t* links(std::uint32_t slot, int level) const;
    std::size_t upper_size(std::uint32_t slot) const { return upper_[slot].size(); }

    // Restore: blocks (slot_count, block_bytes) either borrowed (kept alive by the caller,
    // copied on the first mutation) or copied; ids (slot_count,): user id, -1 for a free slot
    // (level -1) or a tombstone (level >= 0); levels (slot_count,); upper: the concatenated
    // upper lists of slots in order (levels[s] * (1 + M) u32 each).
    void restore(const std::uint8_t* blocks, bool borrow, std::size_t slot_count,
                 const std::int64_t* ids, const std::int32_t* levels, const std::uint32_t* upper, std::size_t upper_len,
                 std::uint32_t entry, int max_level, std::uint64_t insert_count);

   private:
    float distance(const PreparedQuery& q, const std::uint8_t* row) const { return scorer_.distance(q, row); }
    template <bool kLocked, class Score, class Fetch>
    void descend(std::uint32_t& cur, float& cur_distance, int level, HnswWorker& w, Score score,
                 Fetch fetch) const;
    template <bool kLocked>
    void greedy(const PreparedQuery& q, std::uint32_t& cur, float& cur_distance, int level,
                HnswWorker& w) const;
    float estimate_own(std::uint32_t slot, const HnswWorker& w) const;
    template <bool kLocked>
    const std::uint32_t* read_links(std::uint32_t slot, int level, HnswWorker& w,
                                    std::size_t& n) const;
    template <bool kLocked>
    std::size_t gather_unvisited(std::uint32_t slot, int level, HnswWorker& w) const;
    float score_gathered(const PreparedQuery& q, const std::uint32_t* todo, std::size_t i,
                         std::size_t m) const;
    void prefetch_links(std::uint32_t slot, int level) const;
    template <bool kLocked, bool kMasked>
    void search_layer(const PreparedQuery& q, std::uint32_t entry, float entry_distance, int level,
                      std::size_t ef, const SlotFilter* mask, HnswWorker& w,
                      TopK* buffer = nullptr) const;
    void select_neighbours(std::vector<HnswCandidate>& sorted, std::size_t max_links,
                           HnswWorker& w) const;
    void search_one(const void* query, std::size_t k, std::size_t ef, const IdFilter& filter,
                    std::size_t list, bool normalize_query, HnswWorker& w, float* out_distances,
                    std::int64_t* out_ids, bool buffered, std::size_t code_buffer = 0) const;
    void search_codes(const PreparedQuery& q, const float* query, std::uint32_t entry, float entry_distance,
                      std::size_t k, std::size_t ef, std::size_t code_buffer, const SlotFilter* mask,
                      HnswWorker& w, float* out_distances, std::int64_t* out_ids) const;
    void prepare_code_query(const float* query, HnswWorker& w) const;
    void rotate_query(const float* x, float* out, HnswWorker& w) const;
    void estimate_block(std::uint32_t slot, HnswWorker& w) const;
    void prefetch_code_node(std::uint32_t slot) const;
    void walk_codes_pool(const PreparedQuery& q, std::uint32_t entry, float entry_distance, std::size_t ef,
                         std::size_t k, TopK& exact, HnswWorker& w) const;
    void walk_codes(std::uint32_t entry, float entry_distance, std::size_t ef, const SlotFilter* mask,
                    TopK& buffer, HnswWorker& w) const;
    const std::uint8_t* own_code(std::uint32_t slot) const {
        return codes_->own.data() + static_cast<std::size_t>(slot) * codes_->code_bytes;
    }
    const std::uint8_t* neighbour_codes(std::uint32_t slot) const {
        return blocks_ + static_cast<std::size_t>(slot) * stride_ - codes_front_;
    }
    void encode_code(std::uint32_t slot);
    void sync_codes(std::uint32_t slot);  // neighbour block of slot <- own codes of its links

    std::uint32_t* mutable_links(std::uint32_t slot, int level);
    void reserve(std::size_t slots);
    void own_blocks();
    // The node blocks (with any codes in front) into a new zeroed allocation of `capacity`
    // strides, the slots in use copied over; blocks_ / rows_ point there afterwards.
    void move_blocks(std::size_t capacity);
    void drop_bad_links();
    int draw_level(std::uint64_t insertion) const;
    void insert(std::uint32_t slot, int level, HnswWorker& w);
    void unlink(const std::vector<std::uint8_t>& removed, std::size_t threads);
    void add_reverse_link(std::uint32_t node, std::uint32_t added, int level, HnswWorker& w);
    void repair(std::uint32_t node, const std::vector<std::uint8_t>& removed, HnswWorker& w);

    std::unique_ptr<HnswWorker> acquire_worker() const;
    void release_worker(std::unique_ptr<HnswWorker> w) const;

    void lock(std::uint32_t slot) const;
    void unlock(std::uint32_t slot) const;

    StoreSpec spec_;
    std::unique_ptr<GraphCodes> codes_;  // storage "rabitq" only
    decltype(PqKernels::fastscan_u4) fastscan_ = nullptr;  // graph over codes, bits = 1
    decltype(PqKernels::fastscan1_u4) fastscan1_ = nullptr;  // the same, entries <= 63
    Scorer scorer_;  // kernels captured at construction (spec_.lo / scale point into lo_ / scale_)
    std::vector<float> lo_, scale_;  // int8 ranges (spec_.lo / spec_.scale point here)
    std::size_t M_, M0_, ef_construction_;
    std::uint64_t seed_;
    double level_mult_;
    std::size_t links_offset_ = 0, block_bytes_ = 0;
    // In memory, slot s's node block starts at blocks_ + s * stride_. A graph over codes keeps
    // the slot's neighbour block in the codes_front_ bytes before it (stride_ = codes_front_ +
    // block_bytes_, rounded up to 64); otherwise stride_ = block_bytes_ and codes_front_ = 0.
    // Files hold the node blocks alone, (slot_count, block_bytes_) (copy_blocks / restore).
    std::size_t stride_ = 0, codes_front_ = 0;

    std::uint8_t* blocks_ = nullptr;   // owned_ or borrowed
    // where row(slot) reads: blocks_ / stride_, or the external store's rows / row_bytes
    const std::uint8_t* rows_ = nullptr;
    std::size_t row_stride_ = 0;
    std::shared_ptr<RerankRows> external_;
    void point_rows();  // rows_ <- blocks_ or external_->data(), after either moves
    // blocks_ points into a caller's memory (a memory-mapped file), not into owned_
    bool borrowed_blocks() const { return blocks_ != nullptr && (owned_ == nullptr || blocks_ != owned_ + codes_front_); }
    std::uint8_t* owned_ = nullptr;    // 64-byte aligned allocation of capacity_ strides
    std::size_t capacity_ = 0, slot_count_ = 0;
    std::vector<std::int32_t> levels_;
    IdMap idmap_;
    mutable std::shared_mutex ids_mutex_;  // the hash map while remove() runs beside searches
    std::vector<std::uint8_t> alive_;  // 1: live node (returned by searches); 0: free or tombstone
    std::atomic<std::size_t> tombstones_{0};
    std::vector<std::vector<std::uint32_t>> upper_;
    std::unique_ptr<std::atomic<std::uint8_t>[]> locks_;
    // Level-0 in-links per slot: a full list re-pruned for a new link never drops the last
    // in-link of a node (kept in place of a kept node that has others), so every node stays
    // reachable from its neighbours -- the heuristic alone can orphan outliers.
    std::unique_ptr<std::atomic<std::uint32_t>[]> indegree_;
    void keep_last_in_links(std::uint32_t node, std::uint32_t added, HnswWorker& w);

    std::mutex entry_mutex_;
    std::uint32_t entry_ = kNone;  // guarded by entry_mutex_ while inserting
    int max_level_ = -1;
    // (max_level + 1) << 32 | entry, published for searches after the entry changes
    std::atomic<std::uint64_t> top_{kNone};
    void publish_top() {
        top_.store((static_cast<std::uint64_t>(max_level_ + 1) << 32) | entry_, std::memory_order_release);
    }
    std::uint64_t insert_count_ = 0;

    mutable std::mutex pool_mutex_;
    mutable std::vector<std::unique_ptr<HnswWorker>> pool_;
};

}  // namespace simdex
