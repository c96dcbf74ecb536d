// HNSW: insertion, removal with link repair, layered search, filtered search.
// See hnsw.hpp for the layout and the concurrency rules.
#include "index/hnsw.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "index/memory.hpp"
#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {

// A candidate of the code walk's pool: estimate, its error bound, slot, expanded flag.
struct CodeCandidate {
    float distance;
    float error;
    std::uint32_t slot;
    std::uint32_t expanded;
};

// Per-thread scratch, pooled by the graph: nothing is allocated per query in steady state.
struct HnswWorker {
    std::vector<std::uint16_t> visited;  // visited[slot] == epoch <=> seen in this search
    std::uint16_t epoch = 0;
    std::vector<HnswCandidate> candidates;  // min-heap: nodes still to expand
    std::vector<HnswCandidate> results;     // max-heap: the ef best (allowed) nodes
    std::vector<HnswCandidate> sorted;      // results / link candidates, ascending
    std::vector<std::uint32_t> todo;        // unvisited neighbours of the node being expanded
    std::vector<HnswCandidate> pool;        // unfiltered search: the ef best, ascending
    std::vector<std::uint8_t> expanded;     // pool[i] was expanded
    std::vector<std::uint32_t> links;       // copy of a link list read under its lock
    std::vector<std::uint32_t> chosen;      // output of the selection heuristic
    std::vector<std::uint32_t> neighbours;  // links of the node being inserted, at one level
    std::vector<float> query, row_query, select_query, decoded, normalized;
    // the selection heuristic's kept nodes prepared as queries (decoded once each)
    std::vector<std::vector<float>> chosen_buffers;
    std::vector<PreparedQuery> chosen_queries;
    SlotMask filter;  // allowed slots of the filter list in use
    std::size_t filter_count = 0;  // allowed ids of a mask filter
    std::vector<std::uint32_t> level_links;  // insert: chosen links of every level, concatenated
    std::vector<std::size_t> level_offsets;  // insert: where each level's links start
    // graph over codes: the prepared query (bits > 1: RaBitQ's; fast-scan: nibble tables
    // and the terms of the estimate, see prepare_code_query), one node's neighbour sums and
    // estimates, the unexpanded pool size of walk_codes_pool
    RaBitQQuery rabitq;
    struct CodeQuery {
        float lo = 0, delta = 0, half_sum = 0, constant = 0;
        float error_scale = 0;  // kHnswCodeBoundEps * (l2 ? 2 : 1) * ||q||: error bound / error factor
    } code;
    std::vector<float> code_shifted, code_rotated, estimates;
    std::vector<double> code_double;  // a dense rotation's output
    const float* block_errors = nullptr;  // error factors of the block estimate_block scored
    std::vector<CodeCandidate> code_pool;  // walk_codes_pool: the window, ascending estimates
    std::vector<CodeCandidate> code_tail;  // walk_codes_pool: re-rank candidates outside it
    std::vector<float> kbest;              // the k best exact distances of expanded nodes, ascending
    void keep_kbest(float d, std::size_t k) {
        if (kbest.size() == k && !(d < kbest.back())) return;
        if (kbest.size() < k) kbest.push_back(d);
        std::size_t i = kbest.size() - 1;
        for (; i > 0 && kbest[i - 1] > d; --i) kbest[i] = kbest[i - 1];
        kbest[i] = d;
    }
    std::vector<std::uint8_t> code_levels, lut, code_pass;
    std::vector<std::uint64_t> code_planes;  // the query levels' bit planes (estimate_own)
    std::vector<std::uint16_t> sums;
    std::vector<float> buffer_distances;      // graph over codes: the candidate buffer
    std::vector<std::int64_t> buffer_slots;

    void new_epoch(std::size_t slots) {
        if (visited.size() < slots) {
            visited.assign(slots + slots / 4 + 16, 0);
            epoch = 0;
        }
        if (++epoch == 0) {
            std::fill(visited.begin(), visited.end(), 0);
            epoch = 1;
        }
    }
    std::size_t mark(std::uint32_t slot) {  // 1 if newly visited, without a branch
        const std::uint16_t before = visited[slot];
        visited[slot] = epoch;
        return before != epoch;
    }
    bool visit(std::uint32_t slot) {  // true if newly visited
        if (visited[slot] == epoch) return false;
        visited[slot] = epoch;
        return true;
    }
};

namespace {

// Function objects (not function pointers) so the heap and sort code inlines them.
struct Closer {
    bool operator()(const HnswCandidate& a, const HnswCandidate& b) const {
        return a.distance < b.distance || (a.distance == b.distance && a.slot < b.slot);
    }
};
struct Farther {
    bool operator()(const HnswCandidate& a, const HnswCandidate& b) const { return Closer()(b, a); }
};
constexpr Closer closer{};
constexpr Farther farther{};

// results: max-heap (worst on top);  candidates: min-heap (best on top)
inline void push_result(std::vector<HnswCandidate>& h, HnswCandidate c) {
    h.push_back(c);
    std::push_heap(h.begin(), h.end(), closer);
}
// Replace the worst result by c (closer than it) and restore the max-heap: one sift-down
// instead of a push and a pop; the set kept is the same.
inline void replace_worst(std::vector<HnswCandidate>& h, HnswCandidate c) {
    HnswCandidate* a = h.data();
    const std::size_t n = h.size();
    std::size_t i = 0;
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && closer(a[child], a[child + 1])) ++child;
        if (!closer(c, a[child])) break;
        a[i] = a[child];
        i = child;
    }
    a[i] = c;
}
inline void push_candidate(std::vector<HnswCandidate>& h, HnswCandidate c) {
    h.push_back(c);
    std::push_heap(h.begin(), h.end(), farther);
}
inline void pop_candidate(std::vector<HnswCandidate>& h) {
    std::pop_heap(h.begin(), h.end(), farther);
    h.pop_back();
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }
inline void prefetch_l2(const void* p) { __builtin_prefetch(p, 0, 2); }

// Every cache line a row touches after its first one: rows need not be 64-byte aligned (a
// 192-byte int8 row in 336-byte blocks can span four lines; counting lines from the row
// size alone missed the last one, the stall of most int8 distances).
inline void prefetch_rest(const std::uint8_t* r, std::size_t bytes, bool to_l1) {
    const auto first = reinterpret_cast<std::uintptr_t>(r) & ~std::uintptr_t{63};
    const auto last = reinterpret_cast<std::uintptr_t>(r + bytes - 1) & ~std::uintptr_t{63};
#pragma GCC unroll 4
    for (std::uintptr_t line = first + 64; line <= last; line += 64) {
        if (to_l1)
            prefetch(reinterpret_cast<const void*>(line));
        else
            prefetch_l2(reinterpret_cast<const void*>(line));
    }
}

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

// n records of `bytes` from src (one every src_stride bytes) to dst (one every dst_stride):
// node blocks between a file's layout and the in-memory one (codes in front).
void copy_strided(std::uint8_t* dst, std::size_t dst_stride, const std::uint8_t* src, std::size_t src_stride,
                  std::size_t n, std::size_t bytes) {
    if (n == 0) return;
    if (dst_stride == bytes && src_stride == bytes) {
        std::memcpy(dst, src, n * bytes);
        return;
    }
    for (std::size_t i = 0; i < n; ++i) std::memcpy(dst + i * dst_stride, src + i * src_stride, bytes);
}

}  // namespace

// ---- construction and storage -----------------------------------------------------------

HnswGraph::HnswGraph(const KernelTable& table, const StoreSpec& spec, std::size_t M,
                     std::size_t ef_construction, std::uint64_t seed, std::shared_ptr<RerankRows> rows)
    : spec_(spec), M_(M), M0_(2 * M), ef_construction_(ef_construction),
      seed_(seed), external_(std::move(rows)) {
    if (M < 2 || M > 1024) throw std::invalid_argument("M must be in [2, 1024]; got " + std::to_string(M));
    if (ef_construction < 1)
        throw std::invalid_argument("ef_construction must be >= 1; got " + std::to_string(ef_construction));
    if ((spec.storage == Storage::bits) != (spec.metric == Metric::hamming))
        throw std::invalid_argument("metric 'hamming' goes with bit codes and only with them");
    if (external_ && (spec.storage != Storage::f32 || external_->spec().storage != Storage::f32 ||
                      external_->spec().dim != spec.dim || external_->spec().metric != spec.metric))
        throw std::invalid_argument("external rows: float32 rows of the graph's dim and metric only");
    level_mult_ = 1.0 / std::log(static_cast<double>(M));
    const std::size_t block_row_bytes = external_ ? 0 : spec.row_bytes;
    links_offset_ = round_up(block_row_bytes, 4);
    block_bytes_ = links_offset_ + 4 * (1 + M0_);
    block_bytes_ = round_up(block_bytes_, block_row_bytes >= 256 ? 64 : 16);
    stride_ = block_bytes_;
    row_stride_ = external_ ? spec.row_bytes : stride_;
    point_rows();
    if (spec.storage == Storage::u8) {
        lo_.assign(spec.dim, 0.0f);
        scale_.assign(spec.dim, 0.0f);
        if (spec.lo) std::copy(spec.lo, spec.lo + spec.dim, lo_.begin());
        if (spec.scale) std::copy(spec.scale, spec.scale + spec.dim, scale_.begin());
        spec_.lo = lo_.data();
        spec_.scale = scale_.data();
    }
    scorer_ = Scorer(table, spec_);
    fastscan_ = table.pq.fastscan_u4;
    fastscan1_ = table.pq.fastscan1_u4;
}

HnswGraph::~HnswGraph() { std::free(owned_); }

void HnswGraph::point_rows() { rows_ = external_ ? external_->data() : blocks_; }

void HnswGraph::set_ranges(const float* lo, const float* scale) {
    if (spec_.storage != Storage::u8) throw std::invalid_argument("set_ranges: only for int8 storage");
    if (slot_count_ != 0) throw std::invalid_argument("set_ranges: the index already holds vectors");
    std::copy(lo, lo + spec_.dim, lo_.begin());
    std::copy(scale, scale + spec_.dim, scale_.begin());
}

void HnswGraph::set_int8_queries(bool on) {
    if (slot_count_ != 0) throw std::invalid_argument("set_int8_queries: the index already holds vectors");
    scorer_.set_int8_queries(on);
}

void HnswGraph::enable_codes(const RaBitQ& quantizer, const float* centre) {
    if (slot_count_ != 0) throw std::invalid_argument("enable_codes: the index already holds vectors");
    if (spec_.storage != Storage::f32 || quantizer.dim() != spec_.dim)
        throw std::invalid_argument("enable_codes: a float32 graph of the quantizer's dimension only");
    codes_.reset(new GraphCodes());
    codes_->quantizer = quantizer;
    codes_->metric = spec_.metric;
    if (centre) codes_->centre.assign(centre, centre + spec_.dim);
    codes_->code_bytes = quantizer.row_bytes();
    const Rotation& rotation = quantizer.rotation();
    if (rotation.kind() == Rotation::Kind::hadamard && rotation.padded_dim() >= 8) {
        // round r: y <- H_h (s_r y) on its window, normalised by 1 / sqrt(h) there (see Rotation)
        const std::size_t D = rotation.padded_dim();
        std::size_t h = 1;
        while (h * 2 <= D) h *= 2;
        codes_->rotation_half = h;
        codes_->rotation_signs.assign(rotation.params(), rotation.params() + Rotation::kRounds * D);
        const float norm = static_cast<float>(1.0 / std::sqrt(static_cast<double>(h)));
        for (std::size_t r = 0; r < Rotation::kRounds; ++r) {
            const std::size_t begin = (r & 1) ? D - h : 0;
            for (std::size_t j = begin; j < begin + h; ++j) codes_->rotation_signs[r * D + j] *= norm;
        }
    }
    const std::size_t D = quantizer.padded_dim(), levels = (std::size_t{1} << quantizer.query_bits()) - 1;
    // nibble tables hold sums of 4 query levels in a byte, block sums stay below 2^16
    codes_->fastscan = quantizer.bits() == 1 && 4 * levels <= 255 && D * levels < 65536;
    codes_->fastscan_bytes = 4 * levels <= 63;  // four entries of a group fit a byte (pq.hpp)
    if (codes_->fastscan) {
        codes_->m4 = D / 4;  // D is a multiple of 64
        codes_->blocks = (M0_ + 31) / 32;
        codes_->factors_offset = codes_->blocks * (D / 8) * 32;
        codes_->factor_count = spec_.metric == Metric::l2 ? 4 : 3;
        codes_->node_bytes = codes_->factors_offset + codes_->factor_count * codes_->blocks * 32 * sizeof(float);
    } else {
        codes_->node_bytes = M0_ * codes_->code_bytes;
    }
    // each slot's neighbour block goes right before its node block (the graph is empty: the
    // allocation, if any, is made again with the new stride)
    codes_front_ = round_up(codes_->node_bytes, 64);
    stride_ = round_up(codes_front_ + block_bytes_, 64);
    if (!external_) row_stride_ = stride_;
    move_blocks(capacity_);
    codes_->own.resize(capacity_ * codes_->code_bytes);
}

void HnswGraph::copy_blocks(std::uint8_t* out) const {
    copy_strided(out, block_bytes_, blocks_, stride_, slot_count_, block_bytes_);
}

void HnswGraph::encode_code(std::uint32_t slot) {
    codes_->quantizer.encode(scorer_.kernels(), reinterpret_cast<const float*>(row(slot)), codes_->centre_ptr(),
                             codes_->own.data() + static_cast<std::size_t>(slot) * codes_->code_bytes);
}

void HnswGraph::sync_codes(std::uint32_t slot) {
    const std::uint32_t* list = links(slot, 0);
    const std::size_t cb = codes_->code_bytes, n = std::min<std::size_t>(list[0], M0_);
    std::uint8_t* block = const_cast<std::uint8_t*>(neighbour_codes(slot));  // (owned: codes are never borrowed)
    if (!codes_->fastscan) {
        for (std::size_t i = 0; i < n; ++i) std::memcpy(block + i * cb, own_code(list[i + 1]), cb);
        return;
    }
    // byte p of neighbour i's sign plane -> block i / 32, pair p, byte t of row i % 32
    // (rows 0..15 at even t, 16..31 at odd t); unused rows stay zero
    const std::size_t pairs = codes_->quantizer.plane_bytes(), width = codes_->blocks * 32;
    std::memset(block, 0, codes_->node_bytes);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* code = own_code(list[i + 1]);
        const std::size_t r = i % 32, t = r < 16 ? 2 * r : 2 * (r - 16) + 1;
        std::uint8_t* dst = block + (i / 32) * pairs * 32 + t;
        std::size_t count = 0;
        for (std::size_t p = 0; p < pairs; ++p) {
            dst[p * 32] = code[p];
            count += static_cast<std::size_t>(__builtin_popcount(code[p]));
        }
        float f[5];
        codes_->quantizer.factors_of(code, f);
        const float factors[4] = {f[1], static_cast<float>(count), f[2], f[0]};  // scale, popcount, error, ||r||^2
        for (std::size_t j = 0; j < codes_->factor_count; ++j)
            std::memcpy(block + codes_->factors_offset + (j * width + i) * sizeof(float), factors + j, sizeof(float));
    }
}

std::size_t HnswGraph::nbytes() const {
    std::size_t total = capacity_ * (stride_ + sizeof(std::int32_t) + 1 +
                                     sizeof(std::vector<std::uint32_t>));
    for (std::size_t s = 0; s < slot_count_; ++s) total += upper_[s].capacity() * 4;
    if (codes_)
        total += codes_->own.capacity() + codes_->centre.size() * 4;  // (neighbour blocks: in stride_)
    if (external_) total += external_->nbytes();  // a mapped file's rows are not in RAM
    return total + (lo_.size() + scale_.size()) * 4 + with_ids([](const IdMap& m) { return m.nbytes(); });
}

void HnswGraph::reserve(std::size_t slots) {
    if (slots <= capacity_) {
        own_blocks();
        return;
    }
    std::size_t capacity = std::max<std::size_t>({slots, capacity_ + capacity_ / 2, 64});
    const bool borrowed = borrowed_blocks();
    move_blocks(capacity);
    levels_.resize(capacity, -1);
    alive_.resize(capacity, 0);
    upper_.resize(capacity);
    std::unique_ptr<std::atomic<std::uint8_t>[]> locks(new std::atomic<std::uint8_t>[capacity]);
    for (std::size_t i = 0; i < capacity; ++i) locks[i].store(0, std::memory_order_relaxed);
    locks_ = std::move(locks);
    std::unique_ptr<std::atomic<std::uint32_t>[]> indegree(new std::atomic<std::uint32_t>[capacity]);
    for (std::size_t i = 0; i < capacity; ++i)
        indegree[i].store(i < capacity_ && indegree_ ? indegree_[i].load(std::memory_order_relaxed) : 0,
                          std::memory_order_relaxed);
    indegree_ = std::move(indegree);
    capacity_ = capacity;
    if (codes_) codes_->own.resize(capacity * codes_->code_bytes);
    if (borrowed) drop_bad_links();
}

// Blocks borrowed from a memory-mapped file are read-only: copy them before a mutation.
void HnswGraph::own_blocks() {
    if (slot_count_ == 0 || !borrowed_blocks()) return;
    move_blocks(std::max<std::size_t>(capacity_, 64));
    drop_bad_links();
}

void HnswGraph::move_blocks(std::size_t capacity) {
    std::uint8_t* memory = capacity ? allocate_rows(capacity * stride_) : nullptr;
    // (borrowed blocks have no codes in front: stride_ = block_bytes_, codes_front_ = 0)
    if (slot_count_) std::memcpy(memory, blocks_ - codes_front_, slot_count_ * stride_);
    if (memory) std::memset(memory + slot_count_ * stride_, 0, (capacity - slot_count_) * stride_);
    std::free(owned_);
    owned_ = memory;
    blocks_ = memory ? memory + codes_front_ : nullptr;
    point_rows();
}

// Blocks copied from a memory-mapped file were validated at load, but the file may have
// changed since: keep only level-0 links that are in range, so writes never follow a bad one
// (in-degrees are recounted from what is kept).
void HnswGraph::drop_bad_links() {
    for (std::size_t s = 0; s < slot_count_; ++s) {
        std::uint32_t* list = mutable_links(static_cast<std::uint32_t>(s), 0);
        std::size_t kept = 0, n = levels_[s] < 0 ? 0 : std::min<std::size_t>(list[0], M0_);
        for (std::size_t i = 0; i < n; ++i)
            if (list[i + 1] < slot_count_ && list[i + 1] != s && levels_[list[i + 1]] >= 0)
                list[1 + kept++] = list[i + 1];
        list[0] = static_cast<std::uint32_t>(kept);
    }
    for (std::size_t s = 0; s < slot_count_; ++s) indegree_[s].store(0, std::memory_order_relaxed);
    for (std::size_t s = 0; s < slot_count_; ++s) {
        const std::uint32_t* out = links(static_cast<std::uint32_t>(s), 0);
        for (std::size_t i = 0; i < out[0]; ++i) indegree_[out[i + 1]].fetch_add(1, std::memory_order_relaxed);
    }
    if (codes_)
        for (std::size_t s = 0; s < slot_count_; ++s)
            if (levels_[s] >= 0) sync_codes(static_cast<std::uint32_t>(s));
}

const std::uint32_t* HnswGraph::links(std::uint32_t slot, int level) const {
    if (level == 0)
        return reinterpret_cast<const std::uint32_t*>(blocks_ + static_cast<std::size_t>(slot) * stride_ +
                                                      links_offset_);
    return upper_[slot].data() + static_cast<std::size_t>(level - 1) * (1 + M_);
}

std::uint32_t* HnswGraph::mutable_links(std::uint32_t slot, int level) {
    return const_cast<std::uint32_t*>(links(slot, level));
}

void HnswGraph::lock(std::uint32_t slot) const {
    std::atomic<std::uint8_t>& l = locks_[slot];
    for (int spins = 0; l.exchange(1, std::memory_order_acquire) != 0; ++spins) {
        if (spins > 64) std::this_thread::yield();
    }
}
void HnswGraph::unlock(std::uint32_t slot) const { locks_[slot].store(0, std::memory_order_release); }

int HnswGraph::draw_level(std::uint64_t insertion) const {
    std::uint64_t bits = splitmix64(seed_ * 0x632be59bd9b4e019ull ^ splitmix64(insertion));
    double u = (static_cast<double>(bits >> 11) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
    return static_cast<int>(std::min(-std::log(u) * level_mult_, 30.0));
}

std::unique_ptr<HnswWorker> HnswGraph::acquire_worker() const {
    std::unique_ptr<HnswWorker> w;
    {
        std::lock_guard<std::mutex> guard(pool_mutex_);
        if (!pool_.empty()) {
            w = std::move(pool_.back());
            pool_.pop_back();
        }
    }
    if (!w) w.reset(new HnswWorker());
    return w;
}

void HnswGraph::release_worker(std::unique_ptr<HnswWorker> w) const {
    std::lock_guard<std::mutex> guard(pool_mutex_);
    pool_.push_back(std::move(w));
}

// ---- distances --------------------------------------------------------------------------

// ---- search primitives --------------------------------------------------------------------

// Greedy descent on one upper level (ef = 1).
// The link list of slot at level: n links; while building (kLocked) a copy taken under
// the node's lock into w.links, otherwise the list in place.
template <bool kLocked>
const std::uint32_t* HnswGraph::read_links(std::uint32_t slot, int level, HnswWorker& w,
                                           std::size_t& n) const {
    const std::uint32_t* list = links(slot, level);
    // The count is clamped: level-0 lists of a graph loaded with mmap=True live in the file,
    // which may change under us (wrong answers then, never a read past the list).
    const std::size_t cap = level == 0 ? M0_ : M_;
    if (!kLocked) {
        n = std::min<std::size_t>(list[0], cap);
        return list + 1;
    }
    lock(slot);
    n = std::min<std::size_t>(list[0], cap);
    w.links.assign(list + 1, list + 1 + n);
    unlock(slot);
    return w.links.data();
}

// Searches (not kLocked) skip nodes scored before in this descent (w.visited, epoch set by
// the caller): a node once no closer than the current one never is later (the current
// distance only drops), so the result is the same with fewer distances. `fetch(slot)` starts
// loading what `score(slot)` reads, for all the unseen neighbours before any is scored.
template <bool kLocked, class Score, class Fetch>
void HnswGraph::descend(std::uint32_t& cur, float& cur_distance, int level, HnswWorker& w, Score score,
                        Fetch fetch) const {
    for (bool changed = true; changed;) {
        changed = false;
        std::size_t n;
        const std::uint32_t* list = read_links<kLocked>(cur, level, w, n);
        if constexpr (!kLocked) {  // the unseen ones, in w.todo
            std::uint32_t* todo = w.todo.data();
            std::size_t m = 0;
            for (std::size_t i = 0; i < n; ++i) {
                todo[m] = list[i];
                m += list[i] < capacity_ && w.mark(list[i]);  // see read_links for the range test
            }
            list = todo;
            n = m;
        }
        for (std::size_t i = 0; i < n; ++i)  // all misses in flight at once
            if (list[i] < capacity_) fetch(list[i]);  // see read_links
        for (std::size_t i = 0; i < n; ++i) {
            if (list[i] >= capacity_) continue;
            const float d = score(list[i]);
            if (d < cur_distance) {
                cur_distance = d;
                cur = list[i];
                changed = true;
            }
        }
    }
}

template <bool kLocked>
void HnswGraph::greedy(const PreparedQuery& q, std::uint32_t& cur, float& cur_distance, int level,
                       HnswWorker& w) const {
    descend<kLocked>(
        cur, cur_distance, level, w, [&](std::uint32_t s) { return distance(q, row(s)); },
        [&](std::uint32_t s) {
            const std::uint8_t* r = row(s);
            prefetch(r);
            prefetch_rest(r, spec_.row_bytes, false);
        });
}

// A node's estimate from its own code (sign plane and factors: 60 bytes at d = 384 where its
// row is 1.5 kB): the integer sum <levels, bits> the fast-scan tables would give, by popcounts
// against the query's level planes (prepare_code_query), in estimate_block's formula.
float HnswGraph::estimate_own(std::uint32_t slot, const HnswWorker& w) const {
    const GraphCodes& c = *codes_;
    const std::uint8_t* code = own_code(slot);
    std::uint64_t count, sum;
    plane_counts(code, w.code_planes.data(), c.quantizer.words(), c.quantizer.query_bits(), count, sum);
    float f[3];  // ||r||^2, scale, error (bits = 1)
    std::memcpy(f, code + c.quantizer.code_bytes(), sizeof f);
    const float inner = w.code.lo * static_cast<float>(count) + w.code.delta * static_cast<float>(sum) - w.code.half_sum;
    return c.factor_count == 4 ? f[0] + w.code.constant - 2.0f * f[1] * inner : w.code.constant - f[1] * inner;
}

// The unvisited neighbours of `slot` at `level` into w.todo (returns how many), marked
// visited; their rows start loading: first cache line with the L1 hint, the rest of every
// such row with the L2 hint, so all the rows' misses are in flight at once (a row is 24 lines
// at d=384 f32: waiting for them one row at a time left the search latency-bound).
template <bool kLocked>
std::size_t HnswGraph::gather_unvisited(std::uint32_t slot, int level, HnswWorker& w) const {
    std::size_t n;
    const std::uint32_t* list = read_links<kLocked>(slot, level, w, n);
    std::uint32_t* todo = w.todo.data();
    // The visited test is branch-free (about half the neighbours are new: unpredictable).
    std::size_t m = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t s = list[i];
        todo[m] = s;
        m += s < capacity_ && w.mark(s);  // an out-of-range link (see read_links) is skipped
    }
    for (std::size_t i = 0; i < m; ++i) prefetch(row(todo[i]));
    for (std::size_t i = 0; i < m; ++i) prefetch_rest(row(todo[i]), spec_.row_bytes, false);
    return m;
}

// Distance to the i-th of m gathered rows, pulling the whole next row into L1 meanwhile.
inline float HnswGraph::score_gathered(const PreparedQuery& q, const std::uint32_t* todo,
                                       std::size_t i, std::size_t m) const {
    if (i + 1 < m) prefetch_rest(row(todo[i + 1]), spec_.row_bytes, true);
    return distance(q, row(todo[i]));
}

// The next node's whole link list (several lines at M0 >= 16).
inline void HnswGraph::prefetch_links(std::uint32_t slot, int level) const {
    const auto* list = reinterpret_cast<const std::uint8_t*>(links(slot, level));
    const std::size_t bytes = 4 * (1 + (level == 0 ? M0_ : M_));
    for (std::size_t b = 0; b < bytes; b += 64) prefetch(list + b);
}

// Best-first search on one level from one entry point: leaves the up-to-ef best nodes
// (allowed by mask, if any) in w.results (unordered). Excluded nodes are still expanded.
//
// Unfiltered: a sorted pool of the ef best nodes seen, each flagged expanded or not (the
// search buffer of Vamana/SVS); the walk expands the best unexpanded node until none is
// left. A node no better than the ef-th is never expanded, as in the two-heap walk, but an
// insertion costs a branch-free binary search and a short move instead of heap sifts, and
// nodes that can never be expanded are not kept. Filtered: two heaps (candidates over all
// nodes, results over allowed ones).
template <bool kLocked, bool kMasked>
void HnswGraph::search_layer(const PreparedQuery& q, std::uint32_t entry, float entry_distance,
                             int level, std::size_t ef, const SlotFilter* mask,
                             HnswWorker& w, TopK* buffer) const {
    w.new_epoch(capacity_);  // capacity: nodes linked by concurrent inserts fit
    w.results.clear();
    w.visit(entry);
    const std::size_t max_links = level == 0 ? M0_ : M_;
    if (w.todo.size() < max_links) w.todo.resize(max_links);
    const std::uint32_t* todo = w.todo.data();
    if (buffer != nullptr && (!kMasked || mask->allows(entry))) buffer->push(entry_distance, entry);

    if constexpr (!kMasked) {
        ef = std::max<std::size_t>(ef, 1);
        w.pool.resize(ef);
        w.expanded.resize(ef);
        HnswCandidate* pool = w.pool.data();
        std::uint8_t* expanded = w.expanded.data();
        pool[0] = {entry_distance, entry};
        expanded[0] = 0;
        std::size_t size = 1, cursor = 0;  // no unexpanded node before cursor
        while (cursor < size) {
            const std::uint32_t current = pool[cursor].slot;
            expanded[cursor] = 1;
            std::size_t next = cursor + 1;  // lowest index that may be unexpanded
            // The likely next node's links start loading now, while this node's neighbours
            // are scored (re-aimed below if a closer node arrives).
            std::size_t peek = next;
            while (peek < size && expanded[peek]) ++peek;
            const std::uint32_t peeked = peek < size ? pool[peek].slot : kNone;
            if (peeked != kNone) prefetch_links(peeked, level);
            const std::size_t m = gather_unvisited<kLocked>(current, level, w);
            for (std::size_t i = 0; i < m; ++i) {
                const float d = score_gathered(q, todo, i, m);
                if (buffer != nullptr) buffer->push(d, todo[i]);
                if (size == ef && !(d < pool[size - 1].distance)) continue;
                // insert after the entries <= d (branch-free upper bound)
                std::size_t first = 0, len = size;
                while (len > 0) {
                    const std::size_t half = len >> 1;
                    const bool right = pool[first + half].distance <= d;
                    first = right ? first + half + 1 : first;
                    len = right ? len - half - 1 : half;
                }
                const std::size_t moved = (size < ef ? size : size - 1) - first;
                std::memmove(pool + first + 1, pool + first, moved * sizeof(HnswCandidate));
                std::memmove(expanded + first + 1, expanded + first, moved);
                pool[first] = {d, todo[i]};
                expanded[first] = 0;
                size += size < ef;
                next = std::min(next, first);
            }
            cursor = next;
            while (cursor < size && expanded[cursor]) ++cursor;
            if (cursor < size && pool[cursor].slot != peeked) prefetch_links(pool[cursor].slot, level);
        }
        w.results.assign(pool, pool + size);
        return;
    }

    w.candidates.clear();
    push_candidate(w.candidates, {entry_distance, entry});
    if (mask->allows(entry)) push_result(w.results, {entry_distance, entry});
    float bound = w.results.size() >= ef ? w.results.front().distance
                                         : std::numeric_limits<float>::infinity();
    while (!w.candidates.empty()) {
        HnswCandidate current = w.candidates.front();
        if (current.distance > bound) break;
        pop_candidate(w.candidates);
        if (!w.candidates.empty()) prefetch_links(w.candidates.front().slot, level);
        const std::size_t m = gather_unvisited<kLocked>(current.slot, level, w);
        for (std::size_t i = 0; i < m; ++i) {
            const std::uint32_t s = todo[i];
            const float d = score_gathered(q, todo, i, m);
            // the filter is asked only for nodes close enough to matter (a by-id filter
            // costs one more memory access per node)
            if (buffer != nullptr && mask->allows(s)) buffer->push(d, s);
            if (d < bound) {
                push_candidate(w.candidates, {d, s});
                if (mask->allows(s)) {
                    if (w.results.size() < ef) {
                        push_result(w.results, {d, s});
                    } else {
                        replace_worst(w.results, {d, s});  // d < bound = the worst's distance
                    }
                    if (w.results.size() >= ef) bound = w.results.front().distance;
                }
            }
        }
    }
}

// Malkov-Yashunin heuristic: walk the candidates (ascending by distance to the base node)
// and keep one if it is closer to the base than to every neighbour kept so far.
// Leaves the kept slots in w.chosen (at most max_links).
void HnswGraph::select_neighbours(std::vector<HnswCandidate>& sorted, std::size_t max_links,
                                  HnswWorker& w) const {
    w.chosen.clear();
    if (sorted.size() <= max_links) {
        for (const HnswCandidate& c : sorted) w.chosen.push_back(c.slot);
        return;
    }
    // d(c, s) is scored as d(s, c) (the metrics are symmetric): each kept node is prepared
    // once as a query instead of preparing (decoding) every candidate.
    if (w.chosen_buffers.size() < max_links) w.chosen_buffers.resize(max_links);
    w.chosen_queries.clear();
    for (const HnswCandidate& c : sorted) {
        if (w.chosen.size() >= max_links) break;
        const std::uint8_t* candidate = row(c.slot);
        bool keep = true;
        for (const PreparedQuery& kept : w.chosen_queries) {
            if (distance(kept, candidate) < c.distance) {
                keep = false;
                break;
            }
        }
        if (keep) {
            w.chosen_queries.push_back(
                scorer_.prepare_row(candidate, w.chosen_buffers[w.chosen.size()], w.decoded));
            w.chosen.push_back(c.slot);
        }
    }
}

// ---- insertion ----------------------------------------------------------------------------

HnswGraph::PendingAdd HnswGraph::begin_add(const std::uint8_t* rows, const std::int64_t* ids,
                                           std::int64_t* assigned, const std::int64_t* order,
                                           std::size_t n) {
    PendingAdd p;
    if (n == 0) return p;
    if (order) {
        std::vector<std::uint8_t> seen(n, 0);
        for (std::size_t i = 0; i < n; ++i) {
            if (order[i] < 0 || static_cast<std::size_t>(order[i]) >= n || seen[order[i]]++)
                throw std::invalid_argument("add: order is not a permutation of the rows");
        }
        p.order.assign(order, order + n);
    }
    if (idmap_.slots() + n >= static_cast<std::size_t>(kNone))
        throw std::invalid_argument("add: the graph would exceed 2**32 - 1 slots");
    if (external_ && !external_->writable())
        throw std::system_error(EACCES, std::generic_category(),
                                "rerank file '" + external_->path() + "' is read-only: the index can search but not add");
    const std::int64_t next_before = idmap_.next_id();
    if (ids) {
        idmap_.check_new(ids, n);
    } else {
        idmap_.next_ids(assigned, n);
        ids = assigned;
    }
    p.ids.assign(ids, ids + n);
    p.slots.resize(n);
    for (std::size_t i = 0; i < n; ++i) p.slots[i] = idmap_.take_slot();
    try {
        reserve(idmap_.slots());
        if (external_) {  // a failed write (full disk) leaves the store as before
            std::vector<std::int64_t> at(p.slots.begin(), p.slots.end());
            external_->put(at.data(), reinterpret_cast<const float*>(rows), n);
            point_rows();  // the store may have moved (grown, remapped)
        }
    } catch (...) {
        for (std::size_t i = n; i-- > 0;) idmap_.give_back(p.slots[i]);
        idmap_.rewind_next_id(next_before);
        throw;
    }
    // Rows are written up front; a node becomes reachable only once it is linked.
    for (std::size_t i = 0; i < n; ++i) {
        std::uint8_t* block = blocks_ + static_cast<std::size_t>(p.slots[i]) * stride_;
        if (!external_) std::memcpy(block, rows + i * spec_.row_bytes, spec_.row_bytes);
        std::memset(block + links_offset_, 0, 4 * (1 + M0_));
        idmap_.bind(p.slots[i], ids[i]);
        alive_[p.slots[i]] = 1;
    }
    slot_count_ = idmap_.slots();
    p.first = insert_count_;
    insert_count_ += n;
    return p;
}

void HnswGraph::insert_nodes(const PendingAdd& p, std::size_t threads) {
    const std::size_t n = p.slots.size();
    if (n == 0) return;
    std::size_t workers = std::max<std::size_t>(1, std::min(threads, n));
    std::vector<std::unique_ptr<HnswWorker>> scratch;
    for (std::size_t t = 0; t < workers; ++t) scratch.push_back(acquire_worker());
    struct Release {
        const HnswGraph* g;
        std::vector<std::unique_ptr<HnswWorker>>& scratch;
        ~Release() {
            for (auto& w : scratch) g->release_worker(std::move(w));
        }
    } release{this, scratch};
    parallel_for(n, workers, [&](std::size_t i, std::size_t worker) {
        std::size_t r = p.order.empty() ? i : static_cast<std::size_t>(p.order[i]);
        insert(p.slots[r], draw_level(p.first + i), *scratch[worker]);
    });
}

void HnswGraph::end_add(const PendingAdd& p) {
    // Nodes an interrupt left uninserted give their ids and slots back (newest first).
    for (std::size_t i = p.slots.size(); i-- > 0;) {
        const std::uint32_t s = p.slots[i];
        if (levels_[s] >= 0) continue;
        // Its id may have been removed meanwhile (a tombstone without a node, or even bound
        // again by a later add to another slot): unbind it only while it names this slot.
        if (idmap_.find(p.ids[i]) == static_cast<std::int64_t>(s)) {
            idmap_.unbind(p.ids[i]);
        } else if (!alive_[s] && tombstones_ > 0) {
            --tombstones_;
        }
        alive_[s] = 0;
        idmap_.give_back(s);
    }
    slot_count_ = idmap_.slots();
}

// The node is searched for on every level first (nothing links to it yet), then its lists
// are written, all of them, under its lock, and only then is it linked from its
// neighbours: a node is never reachable before its lists are complete, and its own lists
// are never rewritten after other threads may have added reverse links to them.
void HnswGraph::insert(std::uint32_t slot, int level, HnswWorker& w) {
    upper_[slot].assign(static_cast<std::size_t>(level) * (1 + M_), 0);
    if (codes_) encode_code(slot);  // before anything links to the node (blocks copy it)
    PreparedQuery q = scorer_.prepare_row(row(slot), w.query, w.decoded);

    std::unique_lock<std::mutex> entry_lock(entry_mutex_);
    std::uint32_t cur = entry_;
    int top = max_level_;
    if (cur == kNone) {
        levels_[slot] = level;
        entry_ = slot;
        max_level_ = level;
        publish_top();
        return;
    }
    if (level <= top) entry_lock.unlock();  // keep the lock only when this node becomes the entry

    float cur_distance = distance(q, row(cur));
    for (int l = top; l > level; --l) greedy<true>(q, cur, cur_distance, l, w);
    const int lowest_shared = std::min(level, top);
    // Levels are searched top-down; level l's links are level_links[start(l), start(l - 1))
    // with start(-1) = the total.
    std::vector<std::size_t>& start = w.level_offsets;
    start.assign(static_cast<std::size_t>(lowest_shared) + 2, 0);
    w.level_links.clear();
    for (int l = lowest_shared; l >= 0; --l) {
        search_layer<true, false>(q, cur, cur_distance, l, ef_construction_, nullptr, w);
        w.sorted.assign(w.results.begin(), w.results.end());
        std::sort(w.sorted.begin(), w.sorted.end(), closer);
        cur = w.sorted.front().slot;
        cur_distance = w.sorted.front().distance;
        select_neighbours(w.sorted, M_, w);
        start[static_cast<std::size_t>(l) + 1] = w.level_links.size();
        w.level_links.insert(w.level_links.end(), w.chosen.begin(), w.chosen.end());
    }
    start[0] = w.level_links.size();
    // start[l + 1] is where level l begins, start[l] where it ends.
    auto level_begin = [&](int l) { return w.level_links.begin() + static_cast<std::ptrdiff_t>(start[static_cast<std::size_t>(l) + 1]); };
    auto level_end = [&](int l) { return w.level_links.begin() + static_cast<std::ptrdiff_t>(start[static_cast<std::size_t>(l)]); };
    lock(slot);
    for (int l = 0; l <= lowest_shared; ++l) {
        std::uint32_t* list = mutable_links(slot, l);
        list[0] = static_cast<std::uint32_t>(level_end(l) - level_begin(l));
        std::copy(level_begin(l), level_end(l), list + 1);
    }
    levels_[slot] = level;
    if (codes_) sync_codes(slot);
    unlock(slot);
    for (auto it = level_begin(0); it != level_end(0); ++it) indegree_[*it].fetch_add(1, std::memory_order_relaxed);
    // Publish: reverse links make the node reachable (add_reverse_link reuses w.chosen).
    for (int l = lowest_shared; l >= 0; --l) {
        w.neighbours.assign(level_begin(l), level_end(l));
        for (std::uint32_t neighbour : w.neighbours) add_reverse_link(neighbour, slot, l, w);
    }
    if (level > top) {
        entry_ = slot;
        max_level_ = level;
        publish_top();
    }
}

// Link node -> added; a full list is re-pruned with the heuristic.
void HnswGraph::add_reverse_link(std::uint32_t node, std::uint32_t added, int level, HnswWorker& w) {
    const std::size_t max_links = level == 0 ? M0_ : M_;
    lock(node);
    std::uint32_t* list = mutable_links(node, level);
    std::size_t n = list[0];
    bool present = false;
    for (std::size_t i = 0; i < n; ++i) present |= list[i + 1] == added;
    if (present) {
        unlock(node);
        return;
    }
    if (n < max_links) {
        list[n + 1] = added;
        list[0] = static_cast<std::uint32_t>(n + 1);
        if (codes_ && level == 0) sync_codes(node);
        unlock(node);
        if (level == 0) indegree_[added].fetch_add(1, std::memory_order_relaxed);
        return;
    }
    PreparedQuery base = scorer_.prepare_row(row(node), w.row_query, w.normalized);
    w.sorted.clear();
    w.sorted.push_back({distance(base, row(added)), added});
    for (std::size_t i = 0; i < n; ++i) w.sorted.push_back({distance(base, row(list[i + 1])), list[i + 1]});
    std::sort(w.sorted.begin(), w.sorted.end(), closer);
    select_neighbours(w.sorted, max_links, w);
    if (level == 0) keep_last_in_links(node, added, w);
    list[0] = static_cast<std::uint32_t>(w.chosen.size());
    std::copy(w.chosen.begin(), w.chosen.end(), list + 1);
    if (codes_ && level == 0) sync_codes(node);
    unlock(node);
}

// Level 0, list of `node` re-pruned to w.chosen from w.sorted (its old links plus `added`):
// a dropped candidate whose only in-link is this list takes the place of the farthest kept
// node that has other in-links; then the in-link counts follow the change.
void HnswGraph::keep_last_in_links(std::uint32_t node, std::uint32_t added, HnswWorker& w) {
    auto chosen_has = [&](std::uint32_t s) {
        return std::find(w.chosen.begin(), w.chosen.end(), s) != w.chosen.end();
    };
    for (const HnswCandidate& c : w.sorted) {
        if (chosen_has(c.slot)) continue;
        const std::uint32_t others = indegree_[c.slot].load(std::memory_order_relaxed) - (c.slot == added ? 0 : 1);
        if (others != 0) continue;
        for (std::size_t i = w.chosen.size(); i-- > 0;) {
            const std::uint32_t kept = w.chosen[i];
            const bool kept_was_linked = kept != added;
            if (indegree_[kept].load(std::memory_order_relaxed) > (kept_was_linked ? 1u : 0u)) {
                w.chosen[i] = c.slot;
                break;
            }
        }
    }
    (void)node;
    // in-links: every old link not kept loses one, `added` gains one if kept
    for (const HnswCandidate& c : w.sorted) {
        const bool kept = chosen_has(c.slot);
        if (c.slot == added) {
            if (kept) indegree_[added].fetch_add(1, std::memory_order_relaxed);
        } else if (!kept) {
            indegree_[c.slot].fetch_sub(1, std::memory_order_relaxed);
        }
    }
}

// ---- removal --------------------------------------------------------------------------------

std::size_t HnswGraph::remove(const std::int64_t* ids, std::size_t n) {
    std::size_t count = 0;
    std::unique_lock<std::shared_mutex> lock(ids_mutex_);
    for (std::size_t i = 0; i < n; ++i) {
        std::int64_t s = idmap_.unbind(ids[i]);
        if (s < 0) continue;
        __atomic_store_n(&alive_[static_cast<std::size_t>(s)], std::uint8_t{0}, __ATOMIC_RELAXED);
        ++tombstones_;
        ++count;
    }
    return count;
}

bool HnswGraph::compact_due() const {
    const std::size_t dead = tombstones_.load(std::memory_order_relaxed);
    return dead > kHnswCompactMin &&
           static_cast<double>(dead) > kHnswCompactFraction * static_cast<double>(live_count());
}

std::size_t HnswGraph::compact(std::size_t threads) {
    if (tombstones_ == 0) return 0;
    std::vector<std::uint8_t> removed(slot_count_, 0);
    for (std::size_t s = 0; s < slot_count_; ++s) removed[s] = levels_[s] >= 0 && !alive_[s];
    unlink(removed, threads);
    std::size_t count = tombstones_.exchange(0);
    return count;
}

// Repairs every live node that links to a removed one, then frees the removed slots.
void HnswGraph::unlink(const std::vector<std::uint8_t>& removed, std::size_t threads) {
    own_blocks();
    // Each node writes only its own lists and reads only removed nodes' lists, so the result
    // does not depend on threads.
    const std::size_t chunk = 256;
    std::size_t tasks = (slot_count_ + chunk - 1) / chunk;
    std::size_t workers = std::max<std::size_t>(1, std::min(threads, tasks));
    std::vector<std::unique_ptr<HnswWorker>> scratch;
    for (std::size_t t = 0; t < workers; ++t) scratch.push_back(acquire_worker());
    try {
        parallel_for(tasks, workers, [&](std::size_t task, std::size_t worker) {
            std::size_t end = std::min(slot_count_, (task + 1) * chunk);
            for (std::size_t s = task * chunk; s < end; ++s)
                if (levels_[s] >= 0 && !removed[s]) repair(static_cast<std::uint32_t>(s), removed, *scratch[worker]);
        });
    } catch (...) {
        // Interrupted: repaired nodes no longer point at removed ones, the others still may,
        // so the removed nodes stay in the graph as tombstones (searches skip them).
        for (auto& w : scratch) release_worker(std::move(w));
        throw;
    }
    for (auto& w : scratch) release_worker(std::move(w));
    for (std::size_t s = 0; s < slot_count_; ++s) {
        if (!removed[s]) continue;
        const std::uint32_t* out = links(static_cast<std::uint32_t>(s), 0);
        for (std::size_t i = 0; i < out[0]; ++i)
            if (!removed[out[i + 1]]) indegree_[out[i + 1]].fetch_sub(1, std::memory_order_relaxed);
        indegree_[s].store(0, std::memory_order_relaxed);
        levels_[s] = -1;
        std::vector<std::uint32_t>().swap(upper_[s]);
        mutable_links(static_cast<std::uint32_t>(s), 0)[0] = 0;
        idmap_.release(static_cast<std::uint32_t>(s));
    }
    if (entry_ != kNone && removed[entry_]) {
        entry_ = kNone;
        max_level_ = -1;
        for (std::size_t s = 0; s < slot_count_; ++s) {
            if (levels_[s] > max_level_) {
                max_level_ = levels_[s];
                entry_ = static_cast<std::uint32_t>(s);
            }
        }
        publish_top();
    }
}

void HnswGraph::repair(std::uint32_t node, const std::vector<std::uint8_t>& removed, HnswWorker& w) {
    for (int l = 0; l <= levels_[node]; ++l) {
        std::uint32_t* list = mutable_links(node, l);
        std::size_t n = list[0];
        bool touched = false;
        for (std::size_t i = 0; i < n; ++i) touched |= removed[list[i + 1]] != 0;
        if (!touched) continue;
        // The surviving links stay (they were chosen by the heuristic); the places freed are
        // refilled from the removed neighbours' links: the heuristic first, then the closest
        // remaining ones, so the node keeps its out-degree and the graph its connectivity.
        const std::size_t max_links = l == 0 ? M0_ : M_;
        w.chosen.clear();
        w.links.clear();
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t s = list[i + 1];
            if (!removed[s]) {
                w.chosen.push_back(s);
                continue;
            }
            const std::uint32_t* second = links(s, l);
            for (std::size_t j = 0; j < second[0]; ++j) {
                std::uint32_t t = second[j + 1];
                if (t != node && !removed[t]) w.links.push_back(t);
            }
        }
        std::sort(w.links.begin(), w.links.end());
        w.links.erase(std::unique(w.links.begin(), w.links.end()), w.links.end());
        PreparedQuery base = scorer_.prepare_row(row(node), w.row_query, w.normalized);
        w.sorted.clear();
        for (std::uint32_t s : w.links)
            if (std::find(w.chosen.begin(), w.chosen.end(), s) == w.chosen.end())
                w.sorted.push_back({distance(base, row(s)), s});
        std::sort(w.sorted.begin(), w.sorted.end(), closer);
        const std::size_t survivors = w.chosen.size();
        for (const HnswCandidate& c : w.sorted) {  // heuristic pass against all kept links
            if (w.chosen.size() >= max_links) break;
            PreparedQuery cq = scorer_.prepare_row(row(c.slot), w.select_query, w.decoded);
            bool keep = true;
            for (std::uint32_t s : w.chosen)
                if (distance(cq, row(s)) < c.distance) { keep = false; break; }
            if (keep) w.chosen.push_back(c.slot);
        }
        for (const HnswCandidate& c : w.sorted) {  // then the closest, up to the old degree
            if (w.chosen.size() >= std::min(max_links, n)) break;
            if (std::find(w.chosen.begin() + survivors, w.chosen.end(), c.slot) == w.chosen.end())
                w.chosen.push_back(c.slot);
        }
        if (l == 0)  // survivors keep their in-link; the refills gain one
            for (std::size_t i = survivors; i < w.chosen.size(); ++i)
                indegree_[w.chosen[i]].fetch_add(1, std::memory_order_relaxed);
        list[0] = static_cast<std::uint32_t>(w.chosen.size());
        std::copy(w.chosen.begin(), w.chosen.end(), list + 1);
        if (codes_ && l == 0) sync_codes(node);
    }
}

// ---- search -----------------------------------------------------------------------------------

namespace {
// Result slots (k, sorted, -1 padded) -> user ids, dropping slots whose id a concurrent
// remove() cleared after the walk found them (the later results move up).
void slots_to_ids(const IdMap& map, std::size_t k, float* distances, std::int64_t* ids) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < k && ids[i] >= 0; ++i) {
        const std::int64_t id = map.id_atomic(static_cast<std::size_t>(ids[i]));
        if (id < 0) continue;
        distances[kept] = distances[i];
        ids[kept++] = id;
    }
    for (; kept < k && ids[kept] >= 0; ++kept) {
        distances[kept] = std::numeric_limits<float>::infinity();
        ids[kept] = -1;
    }
}
}  // namespace

// ---- graph over codes ------------------------------------------------------------------------

namespace {

void keep_sums(void* context, std::size_t, std::size_t block, std::uint32_t, const std::uint16_t* sums) {
    std::memcpy(static_cast<std::uint16_t*>(context) + block * 32, sums, 32 * sizeof(std::uint16_t));
}

// Four floats as one vector (GCC / Clang vector extensions: SSE on x86-64, NEON on arm64).
typedef float F4 __attribute__((vector_size(16)));
typedef std::int32_t I4 __attribute__((vector_size(16)));
typedef std::uint8_t U8x16 __attribute__((vector_size(16)));
#if defined(__clang__)
#define SIMDEX_SHUFFLE4(v, a, b, c, d) __builtin_shufflevector(v, v, a, b, c, d)
#else
#define SIMDEX_SHUFFLE4(v, a, b, c, d) __builtin_shuffle(v, (I4){a, b, c, d})
#endif
inline F4 load4(const float* p) {
    F4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store4(float* p, F4 v) { std::memcpy(p, &v, sizeof v); }

// y (h,) <- H_h (s * y), h a power of two >= 8, H_h the Walsh-Hadamard matrix without its
// normalisation (folded into s, see GraphCodes::rotation_signs). The first three stages are
// done per 8 floats in registers (two vectors, with the sign multiply), the others are
// butterflies between vectors.
void signed_fwht(float* y, const float* s, std::size_t h) {
    const F4 alternate = {1.0f, -1.0f, 1.0f, -1.0f}, halves = {1.0f, 1.0f, -1.0f, -1.0f};
    for (std::size_t i = 0; i < h; i += 8) {
        F4 a = load4(y + i) * load4(s + i), b = load4(y + i + 4) * load4(s + i + 4);
        a = SIMDEX_SHUFFLE4(a, 0, 0, 2, 2) + SIMDEX_SHUFFLE4(a, 1, 1, 3, 3) * alternate;
        b = SIMDEX_SHUFFLE4(b, 0, 0, 2, 2) + SIMDEX_SHUFFLE4(b, 1, 1, 3, 3) * alternate;
        a = SIMDEX_SHUFFLE4(a, 0, 1, 0, 1) + SIMDEX_SHUFFLE4(a, 2, 3, 2, 3) * halves;
        b = SIMDEX_SHUFFLE4(b, 0, 1, 0, 1) + SIMDEX_SHUFFLE4(b, 2, 3, 2, 3) * halves;
        store4(y + i, a + b);
        store4(y + i + 4, a - b);
    }
    // the later stages two at a time (stages len and 2 len on four vectors: one load and one
    // store per vector for both), a last single stage if their count is odd
    std::size_t len = 8;
    for (; 2 * len < h; len <<= 2)
        for (std::size_t i = 0; i < h; i += len << 2)
            for (std::size_t j = i; j < i + len; j += 4) {
                const F4 a = load4(y + j), b = load4(y + j + len);
                const F4 c = load4(y + j + 2 * len), d = load4(y + j + 3 * len);
                const F4 ab = a + b, a_b = a - b, cd = c + d, c_d = c - d;
                store4(y + j, ab + cd);
                store4(y + j + len, a_b + c_d);
                store4(y + j + 2 * len, ab - cd);
                store4(y + j + 3 * len, a_b - c_d);
            }
    if (len < h)
        for (std::size_t j = 0; j < len; j += 4) {
            const F4 a = load4(y + j), b = load4(y + j + len);
            store4(y + j, a + b);
            store4(y + j + len, a - b);
        }
}

// <a, b> in float32 with 8 partial sums (one vector of them: the loop vectorises without
// reassociating a single sum), the tail and the total in double.
double float_dot(const float* a, const float* b, std::size_t n) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t t = 0; t < 8; ++t) part[t] += a[j + t] * b[j + t];
    double total = 0;
    for (; j < n; ++j) total += static_cast<double>(a[j]) * b[j];
    for (float p : part) total += p;
    return total;
}

// bit_mask[b][c] = 0xff where bit b of nibble c is set: T[c] = sum_b (level_b & bit_mask[b][c])
// is one 16-byte vector expression per sub-space
constexpr std::uint8_t bit_mask(unsigned b, unsigned c) { return (c >> b & 1u) ? 0xff : 0x00; }
struct NibbleMasks {
    std::uint8_t m[4][16];
    constexpr NibbleMasks() : m() {
        for (unsigned b = 0; b < 4; ++b)
            for (unsigned c = 0; c < 16; ++c) m[b][c] = bit_mask(b, c);
    }
};
constexpr NibbleMasks kNibbleMasks{};

}  // namespace

// The query of a fast-scan code walk, all in float32 (estimates steer the walk only; every
// returned distance is exact): rotated with the float Walsh-Hadamard path, quantised to
// query_bits levels qint_i = round((v_i - lo) / delta), then the nibble tables (pq.hpp
// layout: sub-space j = dimensions 4j .. 4j+3, group j / 4, quarter (j % 2) * 64 + (j / 2 % 2) * 32)
// T_j[c] = sum of qint_{4j+b} over the set bits b of c. The estimate of a neighbour with
// sign bits b (popcount n, 1-bit scale s, ||r||^2) is then, with dot = sum_i b_i qint_i from
// the scan:  <b - 1/2, q> ~= lo n + delta dot - sum / 2,  sum = D lo + delta sum_i qint_i;
// ip / cosine: constant - s <b - 1/2, q>;  l2: ||r||^2 + constant - 2 s <b - 1/2, q>.
void HnswGraph::prepare_code_query(const float* query, HnswWorker& w) const {
    const GraphCodes& c = *codes_;
    const RaBitQ& quantizer = c.quantizer;
    const std::size_t dim = spec_.dim, D = quantizer.padded_dim(), m = D / 4;
    const bool l2 = c.metric == Metric::l2;
    const float* centre = c.centre_ptr();
    w.code_shifted.resize(dim);
    w.code_rotated.resize(D);
    w.code_levels.resize(D);
    w.lut.resize(m * 32);
    w.sums.resize(c.blocks * 32);
    w.estimates.resize(c.blocks * 32);
    const float* x = query;
    if (l2 && centre) {
        for (std::size_t j = 0; j < dim; ++j) w.code_shifted[j] = query[j] - centre[j];
        x = w.code_shifted.data();
    }
    const double norm2 = float_dot(x, x, dim);  // ||R x|| = ||x||
    // ip: 1 - <c, q>;  l2: ||q - c||^2
    const double constant = l2 ? norm2 : 1.0 - (centre ? float_dot(centre, query, dim) : 0.0);
    float* v = w.code_rotated.data();
    rotate_query(x, v, w);
    F4 low = load4(v), high = low;  // D is a multiple of 64
    for (std::size_t i = 4; i < D; i += 4) {
        const F4 x4 = load4(v + i);
        low = x4 < low ? x4 : low;
        high = x4 > high ? x4 : high;
    }
    float lo = low[0], hi = high[0];
    for (int t = 1; t < 4; ++t) {
        lo = std::min(lo, low[t]);
        hi = std::max(hi, high[t]);
    }
    const int top = (1 << quantizer.query_bits()) - 1;
    const float delta = hi > lo ? (hi - lo) / static_cast<float>(top) : 0.0f;
    const float inv = delta > 0 ? 1.0f / delta : 0.0f;
    std::uint8_t* levels = w.code_levels.data();
    std::uint32_t total = 0;
    for (std::size_t i = 0; i < D; ++i) {
        const int level = std::min(static_cast<int>((v[i] - lo) * inv + 0.5f), top);
        levels[i] = static_cast<std::uint8_t>(level);
        total += static_cast<std::uint32_t>(level);
    }
    w.code_planes.resize(static_cast<std::size_t>(quantizer.query_bits()) * quantizer.words());
    level_planes(levels, D, quantizer.query_bits(), w.code_planes.data());  // for estimate_own
    std::uint8_t* lut = w.lut.data();
    U8x16 mask[4];
    for (int b = 0; b < 4; ++b) std::memcpy(&mask[b], kNibbleMasks.m[b], 16);
    for (std::size_t j = 0; j < m; ++j) {
        const std::uint8_t* q4 = levels + 4 * j;
        const U8x16 t = (mask[0] & q4[0]) + (mask[1] & q4[1]) + (mask[2] & q4[2]) + (mask[3] & q4[3]);
        std::uint8_t* out = lut + (j / 4) * 128 + (j & 1) * 64 + (j >> 1 & 1) * 32;
        std::memcpy(out, &t, 16);
        std::memcpy(out + 16, &t, 16);
    }
    w.code.lo = lo;
    w.code.delta = delta;
    w.code.half_sum = static_cast<float>(0.5 * (static_cast<double>(D) * lo + static_cast<double>(delta) * total));
    w.code.constant = static_cast<float>(constant);
    w.code.error_scale = static_cast<float>(kHnswCodeBoundEps * (l2 ? 2.0 : 1.0) * std::sqrt(norm2));
}

// x (dim,) -> out (D,) = R x in float32: Hadamard rotations with signed_fwht, a dense
// rotation through RaBitQ's (double) map.
void HnswGraph::rotate_query(const float* x, float* out, HnswWorker& w) const {
    const GraphCodes& c = *codes_;
    const Rotation& rotation = c.quantizer.rotation();
    const std::size_t dim = spec_.dim, D = rotation.padded_dim(), h = c.rotation_half;
    if (c.rotation_signs.empty()) {
        w.code_double.resize(D);
        rotation.apply(scorer_.kernels(), x, w.code_double.data());
        for (std::size_t j = 0; j < D; ++j) out[j] = static_cast<float>(w.code_double[j]);
        return;
    }
    std::memcpy(out, x, dim * sizeof(float));
    std::fill(out + dim, out + D, 0.0f);
    for (std::size_t r = 0; r < Rotation::kRounds; ++r) {
        const float* s = c.rotation_signs.data() + r * D;
        const std::size_t begin = (r & 1) ? D - h : 0;  // the transformed window [begin, begin + h)
        for (std::size_t j = 0; j < begin; ++j) out[j] *= s[j];
        for (std::size_t j = begin + h; j < D; ++j) out[j] *= s[j];
        signed_fwht(out + begin, s + begin, h);
    }
}

// Estimates of every neighbour of `slot` (in link order) into w.estimates: one fast-scan call
// over the node's code block, then one vectorised pass over its factor arrays.
void HnswGraph::estimate_block(std::uint32_t slot, HnswWorker& w) const {
    const GraphCodes& c = *codes_;
    const std::uint8_t* block = neighbour_codes(slot);
    if (c.fastscan_bytes) {
        fastscan1_(block, c.blocks, c.m4, w.lut.data(), w.sums.data());
    } else {
        std::uint16_t all = 0xffff;
        fastscan_(block, c.blocks, c.m4, w.lut.data(), 1, &all, keep_sums, w.sums.data());
    }
    const std::size_t width = c.blocks * 32;
    const float* scale = reinterpret_cast<const float*>(block + c.factors_offset);
    const float* count = scale + width;
    const float* error = count + width;
    const std::uint16_t* sums = w.sums.data();
    float* out = w.estimates.data();
    const float lo = w.code.lo, delta = w.code.delta, half_sum = w.code.half_sum, constant = w.code.constant;
    w.block_errors = error;
    if (c.factor_count == 4) {
        const float* norm2 = error + width;
        for (std::size_t i = 0; i < width; ++i)
            out[i] = norm2[i] + constant -
                     2.0f * scale[i] * (lo * count[i] + delta * static_cast<float>(sums[i]) - half_sum);
    } else {
        for (std::size_t i = 0; i < width; ++i)
            out[i] = constant - scale[i] * (lo * count[i] + delta * static_cast<float>(sums[i]) - half_sum);
    }
}

// A node about to be expanded: its links, its neighbours' code block and its own row (for
// the exact distance taken on expansion) start loading.
inline void HnswGraph::prefetch_code_node(std::uint32_t slot) const {
    prefetch_links(slot, 0);
    const std::uint8_t* block = neighbour_codes(slot);
#pragma GCC unroll 4
    for (std::size_t b = 0; b < codes_->node_bytes; b += 64) prefetch_l2(block + b);
    const std::uint8_t* r = row(slot);
    prefetch_l2(r);
    prefetch_rest(r, spec_.row_bytes, false);
}

// Unfiltered fast-scan walk (after SymphonyQG's search): a window of the ef best candidates
// seen, ascending, each flagged expanded or not, keyed by estimate until expanded and by exact
// distance from then on; the walk expands the best unexpanded node of the window until none
// is left, as the float walk does with its pool. Expanding a node scores all its neighbours
// from its code block and takes the node's own exact distance into `exact` and w.kbest (its
// row was prefetched with its links and block). Candidates outside
// the window (never entered it, or pushed out unexpanded) go to w.code_tail when their lower
// bound (estimate - error bound) can beat the k-th exact distance so far: the caller
// re-ranks the best of them (appends, no ordering kept while walking).
void HnswGraph::walk_codes_pool(const PreparedQuery& q, std::uint32_t entry, float entry_distance, std::size_t ef,
                                std::size_t k, TopK& exact, HnswWorker& w) const {
    w.new_epoch(capacity_);
    w.visit(entry);
    ef = std::max<std::size_t>(ef, 1);
    w.code_pool.resize(ef);
    w.code_tail.clear();
    w.kbest.clear();
    CodeCandidate* pool = w.code_pool.data();
    const float* estimates = w.estimates.data();
    const float error_scale = w.code.error_scale;
    const std::size_t width = codes_->blocks * 32;
    w.code_pass.resize(width);
    constexpr float kInf = std::numeric_limits<float>::infinity();
    pool[0] = {entry_distance, 0.0f, entry, 0};
    std::size_t size = 1, cursor = 0;
    float kth = kInf;
    while (cursor < size) {
        const std::uint32_t current = pool[cursor].slot;
        pool[cursor].expanded = 1;
        std::size_t next = cursor + 1;  // lowest index that may be unexpanded
        std::size_t peek = next;
        while (peek < size && pool[peek].expanded) ++peek;
        const std::uint32_t peeked = peek < size ? pool[peek].slot : kNone;
        if (peeked != kNone) prefetch_code_node(peeked);
        estimate_block(current, w);
        // The node's exact distance replaces its estimate in the window (it moves to its
        // exact rank): the window's bound and order then rest on exact distances wherever
        // they are known, which reaches a recall at a much smaller ef (0.92 -> 0.95 at
        // ef = 20 on 60k x 384 MiniLM).
        const float d_exact = distance(q, row(current));
        exact.push(d_exact, current);
        w.keep_kbest(d_exact, k);
        if (w.kbest.size() >= k) kth = w.kbest.back();
        {
            const CodeCandidate moved{d_exact, 0.0f, current, 1};
            std::size_t p = cursor;
            for (; p > 0 && pool[p - 1].distance > d_exact; --p) pool[p] = pool[p - 1];
            for (; p + 1 < size && pool[p + 1].distance <= d_exact; ++p) pool[p] = pool[p + 1];
            pool[p] = moved;
            if (p > cursor) next = cursor;  // the entries after it moved up one place
        }
        const std::uint32_t* list = links(current, 0);
        const std::size_t n = std::min<std::size_t>(list[0], M0_);
        const float* errors = w.block_errors;
        // Only neighbours that can enter the window or the tail are picked (branch-free),
        // and only they are looked up in the visited set. A neighbour left out is not
        // marked: met again, it has the same estimate and bound while the window's worst and
        // the k-th exact distance have only dropped since, so it is left out again.
        const float worst = size == ef ? pool[ef - 1].distance : kInf;
        std::uint8_t* pass = w.code_pass.data();
        for (std::size_t i = 0; i < width; ++i)  // vectorised
            pass[i] = static_cast<std::uint8_t>((estimates[i] < worst) | (estimates[i] - error_scale * errors[i] <= kth));
        // The picked ones in link order, eight pass bytes (0 / 1) at a time as the bits of one
        // byte (byte j of a little-endian word times the magic lands in bit 56 + j): the loop
        // below runs once per picked neighbour, not once per neighbour.
        static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pass bytes are read as little-endian words");
        for (std::size_t i0 = 0; i0 < n; i0 += 8) {
            std::uint64_t bytes;
            std::memcpy(&bytes, pass + i0, 8);  // in range: pass holds width (n rounded up to 32)
            std::uint32_t bits = static_cast<std::uint32_t>((bytes * 0x0102040810204080ull) >> 56);
            if (n - i0 < 8) bits &= (1u << (n - i0)) - 1;
            for (; bits; bits &= bits - 1) {
                const std::size_t i = i0 + static_cast<std::size_t>(__builtin_ctz(bits));
                const std::uint32_t s = list[i + 1];
                if (s >= capacity_ || !w.visit(s)) continue;
                const CodeCandidate c{estimates[i], error_scale * errors[i], s, 0};
                if (size == ef && !(c.distance < pool[ef - 1].distance)) {
                    if (c.distance - c.error <= kth) w.code_tail.push_back(c);
                    continue;
                }
                std::size_t first = 0, len = size;  // insert after the entries <= d
                while (len > 0) {
                    const std::size_t half = len >> 1;
                    const bool right = pool[first + half].distance <= c.distance;
                    first = right ? first + half + 1 : first;
                    len = right ? len - half - 1 : half;
                }
                if (size == ef) {  // the window's last leaves it
                    const CodeCandidate& out = pool[ef - 1];
                    if (!out.expanded && out.distance - out.error <= kth) w.code_tail.push_back(out);
                }
                const std::size_t moved = (size < ef ? size : size - 1) - first;
                std::memmove(pool + first + 1, pool + first, moved * sizeof(CodeCandidate));
                pool[first] = c;
                size += size < ef;
                next = std::min(next, first);
            }
        }
        cursor = next;
        while (cursor < size && pool[cursor].expanded) ++cursor;
        if (cursor < size && pool[cursor].slot != peeked) prefetch_code_node(pool[cursor].slot);
    }
}

// Level-0 best-first walk on codes with a filter or tombstones, or over codes scored row by
// row (bits > 1): two heaps as the filtered float walk (candidates over every node, a window
// of the ef best allowed estimates bounding the walk), every allowed estimate offered to
// `buffer`, which the caller re-ranks exactly.
void HnswGraph::walk_codes(std::uint32_t entry, float entry_distance, std::size_t ef, const SlotFilter* mask,
                           TopK& buffer, HnswWorker& w) const {
    const RaBitQ& quantizer = codes_->quantizer;
    const std::size_t cb = codes_->code_bytes, block_bytes = codes_->node_bytes;
    const bool fastscan = codes_->fastscan;
    w.new_epoch(capacity_);
    w.candidates.clear();
    w.results.clear();
    w.visit(entry);
    push_candidate(w.candidates, {entry_distance, entry});
    if (!mask || mask->allows(entry)) {
        push_result(w.results, {entry_distance, entry});
        buffer.push(entry_distance, entry);
    }
    float bound = w.results.size() >= ef ? w.results.front().distance : std::numeric_limits<float>::infinity();
    while (!w.candidates.empty()) {
        const HnswCandidate current = w.candidates.front();
        if (current.distance > bound) break;
        pop_candidate(w.candidates);
        if (!w.candidates.empty()) {
            const std::uint32_t next = w.candidates.front().slot;
            prefetch_links(next, 0);
            const std::uint8_t* next_block = neighbour_codes(next);
            for (std::size_t b = 0; b < block_bytes; b += 64) prefetch_l2(next_block + b);
        }
        const std::uint32_t* list = links(current.slot, 0);
        const std::size_t n = std::min<std::size_t>(list[0], M0_);
        const std::uint8_t* block = neighbour_codes(current.slot);
        if (fastscan) estimate_block(current.slot, w);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint32_t s = list[i + 1];
            if (s >= capacity_ || !w.visit(s)) continue;
            const float d = fastscan ? w.estimates[i] : quantizer.distance(w.rabitq, block + i * cb);
            const bool allowed = !mask || mask->allows(s);
            if (allowed) buffer.push(d, s);
            if (d < bound) {
                push_candidate(w.candidates, {d, s});
                if (allowed) {
                    if (w.results.size() < ef)
                        push_result(w.results, {d, s});
                    else
                        replace_worst(w.results, {d, s});
                    if (w.results.size() >= ef) bound = w.results.front().distance;
                }
            }
        }
    }
}

// Level 0 of a graph over codes from `entry` (reached by the descent: on the nodes' own codes
// with fast-scan, whose query search_one has prepared; exact otherwise): a walk on estimates,
// then the exact distances of the candidates it kept (see hnsw.hpp, GraphCodes).
void HnswGraph::search_codes(const PreparedQuery& q, const float* query, std::uint32_t entry, float entry_distance,
                             std::size_t k, std::size_t ef, std::size_t code_buffer, const SlotFilter* mask,
                             HnswWorker& w, float* out_distances, std::int64_t* out_ids) const {
    const std::size_t window = std::max(ef, k);
    const std::size_t size = std::max(code_buffer == 0 ? 2 * window : code_buffer, k);
    if (!codes_->fastscan)  // (fast-scan queries are prepared by search_one, for its descent)
        codes_->quantizer.prepare(scorer_.kernels(), query, codes_->centre_ptr(), codes_->metric, w.rabitq);
    TopK top(k);
    std::size_t rows = 0;  // candidates still to score exactly, into w.buffer_slots
    if (codes_->fastscan && !mask) {
        walk_codes_pool(q, entry, entry_distance, window, k, top, w);
        // the tail's candidates whose lower bound can still beat the k-th exact distance,
        // at most size - window of them (the best estimates)
        const float kth = w.kbest.size() >= k ? w.kbest.back() : std::numeric_limits<float>::infinity();
        std::vector<CodeCandidate>& tail = w.code_tail;
        std::size_t kept = 0;
        for (const CodeCandidate& c : tail)
            if (c.distance - c.error <= kth) tail[kept++] = c;
        const std::size_t limit = size > window ? size - window : 0;
        if (kept > limit) {
            std::nth_element(tail.begin(), tail.begin() + static_cast<std::ptrdiff_t>(limit),
                             tail.begin() + static_cast<std::ptrdiff_t>(kept),
                             [](const CodeCandidate& a, const CodeCandidate& b) { return a.distance < b.distance; });
            kept = limit;
        }
        w.buffer_slots.resize(kept);
        for (std::size_t i = 0; i < kept; ++i) w.buffer_slots[rows++] = tail[i].slot;
    } else {
        TopK buffer(size);
        walk_codes(entry, entry_distance, window, mask, buffer, w);
        w.buffer_distances.resize(size);
        w.buffer_slots.resize(size);
        buffer.write_sorted(w.buffer_distances.data(), w.buffer_slots.data());
        while (rows < size && w.buffer_slots[rows] >= 0) ++rows;
    }
    // every candidate row starts loading at once (L2), the next one is pulled into L1 while
    // one is scored: the re-rank waits for about one miss, not one per row
    for (std::size_t i = 0; i < rows; ++i) {
        const std::uint8_t* r = row(static_cast<std::uint32_t>(w.buffer_slots[i]));
        prefetch(r);
        prefetch_rest(r, spec_.row_bytes, false);
    }
    for (std::size_t i = 0; i < rows; ++i) {
        if (i + 1 < rows) prefetch_rest(row(static_cast<std::uint32_t>(w.buffer_slots[i + 1])), spec_.row_bytes, true);
        const std::uint32_t s = static_cast<std::uint32_t>(w.buffer_slots[i]);
        top.push(distance(q, row(s)), s);
    }
    top.write_sorted(out_distances, out_ids);
    slots_to_ids(idmap_, k, out_distances, out_ids);
}

void HnswGraph::search_one(const void* query, std::size_t k, std::size_t ef, const IdFilter& filter,
                           std::size_t list, bool normalize_query, HnswWorker& w,
                           float* out_distances, std::int64_t* out_ids, bool buffered,
                           std::size_t code_buffer) const {
    const void* raw = query;
    if (normalize_query) {
        const float* x = static_cast<const float*>(query);
        double norm = 0;
        for (std::size_t j = 0; j < spec_.dim; ++j) norm += static_cast<double>(x[j]) * x[j];
        float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 1.0f;
        w.normalized.resize(spec_.dim);
        for (std::size_t j = 0; j < spec_.dim; ++j) w.normalized[j] = x[j] * inv;
        raw = w.normalized.data();
    }
    PreparedQuery q = scorer_.prepare(raw, w.query);
    // Which slots may be returned: a filter's live slots, else every live node (a mask only
    // while tombstones exist; the walk still passes through excluded nodes).
    SlotFilter slot_filter;
    const SlotFilter* mask = nullptr;
    if (filter.active()) {
        std::shared_lock<std::shared_mutex> ids_lock(ids_mutex_);  // hash map lookups below
        std::size_t count = 0;
        if (filter.id_mask) {
            slot_filter.slot_ids = idmap_.ids();
            slot_filter.id_mask = filter.id_mask;
            slot_filter.id_mask_len = filter.id_mask_len;
            count = w.filter_count;  // counted once per search (see search())
        } else {
            w.filter.build(idmap_, filter, list);
            slot_filter.slot_mask = w.filter.allow.data();
            count = w.filter.slots.size();
        }
        mask = &slot_filter;
        const bool exact = static_cast<double>(count) <
                               kHnswExactFilterFraction * static_cast<double>(idmap_.size()) ||
                           count <= std::max(ef, k);
        if (exact) {
            // Small allowed set: exact scan of just those rows.
            if (filter.id_mask) w.filter.build_from_mask(idmap_, filter.id_mask, filter.id_mask_len);
            TopK top(k);
            const std::vector<std::uint32_t>& allowed = w.filter.slots;
            for (std::size_t i = 0; i < allowed.size(); ++i) {
                if (i + 1 < allowed.size()) prefetch(row(allowed[i + 1]));
                top.push(distance(q, row(allowed[i])), allowed[i]);
            }
            top.write_sorted(out_distances, out_ids);
            ids_lock.unlock();
            slots_to_ids(idmap_, k, out_distances, out_ids);
            return;
        }
    } else if (tombstones_.load(std::memory_order_relaxed) != 0) {
        slot_filter.slot_mask = alive_.data();
        mask = &slot_filter;
    }
    std::size_t found = 0;
    const std::uint64_t top = top_.load(std::memory_order_acquire);
    if (static_cast<std::uint32_t>(top) != kNone) {
        std::uint32_t cur = static_cast<std::uint32_t>(top);
        w.new_epoch(capacity_);  // greedy's seen nodes
        w.visit(cur);
        if (w.todo.size() < std::max(M_, M0_)) w.todo.resize(std::max(M_, M0_));
        const int top_level = static_cast<int>(top >> 32);
        if (codes_ && codes_->fastscan) {
            // The upper levels on the nodes' own codes (60 bytes per node scored instead of a
            // 1.5 kB row); level 0 starts from the node the descent ends at, exact distance.
            prepare_code_query(static_cast<const float*>(raw), w);
            float estimate = estimate_own(cur, w);
            for (int l = top_level - 1; l > 0; --l)
                descend<false>(
                    cur, estimate, l, w, [&](std::uint32_t s) { return estimate_own(s, w); },
                    [&](std::uint32_t s) {
                        const std::uint8_t* code = own_code(s);
                        prefetch(code);
                        prefetch(code + codes_->code_bytes - 1);
                    });
            search_codes(q, static_cast<const float*>(raw), cur, distance(q, row(cur)), k, ef, code_buffer, mask,
                         w, out_distances, out_ids);
            return;
        }
        float cur_distance = distance(q, row(cur));
        for (int l = top_level - 1; l > 0; --l) greedy<false>(q, cur, cur_distance, l, w);
        if (codes_) {
            search_codes(q, static_cast<const float*>(raw), cur, cur_distance, k, ef, code_buffer, mask, w,
                         out_distances, out_ids);
            return;
        }
        if (buffered && k > ef) {
            // Window ef, results from every scored node (each result of the window was scored,
            // so the buffer's top k is at least as good as the window's).
            TopK buffer(k);
            if (mask)
                search_layer<false, true>(q, cur, cur_distance, 0, ef, mask, w, &buffer);
            else
                search_layer<false, false>(q, cur, cur_distance, 0, ef, nullptr, w, &buffer);
            buffer.write_sorted(out_distances, out_ids);
            slots_to_ids(idmap_, k, out_distances, out_ids);
            return;
        }
        std::size_t width = std::max(ef, k);
        if (mask)
            search_layer<false, true>(q, cur, cur_distance, 0, width, mask, w);
        else
            search_layer<false, false>(q, cur, cur_distance, 0, width, nullptr, w);
        w.sorted.assign(w.results.begin(), w.results.end());
        std::sort(w.sorted.begin(), w.sorted.end(), closer);
        for (std::size_t i = 0; i < w.sorted.size() && found < k; ++i) {
            const std::int64_t id = idmap_.id_atomic(w.sorted[i].slot);  // -1: removed meanwhile
            if (id < 0) continue;
            out_distances[found] = w.sorted[i].distance;
            out_ids[found++] = id;
        }
    }
    for (; found < k; ++found) {
        out_distances[found] = std::numeric_limits<float>::infinity();
        out_ids[found] = -1;
    }
}

void HnswGraph::search(const void* queries, std::size_t nq, std::size_t k, std::size_t ef,
                       const IdFilter& filter, bool normalize_queries, std::size_t threads,
                       float* out_distances, std::int64_t* out_ids, bool buffered,
                       std::size_t code_buffer) const {
    if (k < 1) throw std::invalid_argument("k must be >= 1");
    if (filter.lists != 0 && filter.lists != 1 && filter.lists != nq)
        throw std::invalid_argument("search: one filter, or one filter per query");
    const std::size_t query_bytes = spec_.storage == Storage::bits ? spec_.row_bytes : spec_.dim * 4;
    const auto* base = static_cast<const std::uint8_t*>(queries);
    std::size_t workers = std::max<std::size_t>(1, std::min(threads, nq));
    std::vector<std::unique_ptr<HnswWorker>> scratch;
    for (std::size_t t = 0; t < workers; ++t) scratch.push_back(acquire_worker());
    struct Release {  // filter masks are cleared (O(allowed)) before the workers go back
        const HnswGraph* g;
        std::vector<std::unique_ptr<HnswWorker>>& scratch;
        ~Release() {
            for (auto& w : scratch) {
                w->filter.clear();
                g->release_worker(std::move(w));
            }
        }
    } release{this, scratch};
    if (filter.id_mask) {
        const std::size_t count = count_allowed(filter.id_mask, filter.id_mask_len);
        for (auto& w : scratch) w->filter_count = count;
    }
    if (nq == 1) {
        search_one(base, k, ef, filter, 0, normalize_queries, *scratch[0], out_distances, out_ids,
                   buffered, code_buffer);
        return;
    }
    const std::size_t chunk = workers == 1 ? 1 : 16;
    std::size_t tasks = (nq + chunk - 1) / chunk;
    parallel_for(tasks, workers, [&](std::size_t task, std::size_t worker) {
        std::size_t end = std::min(nq, (task + 1) * chunk);
        for (std::size_t i = task * chunk; i < end; ++i)
            search_one(base + i * query_bytes, k, ef, filter, filter.list_of(i), normalize_queries,
                       *scratch[worker], out_distances + i * k, out_ids + i * k, buffered, code_buffer);
    });
}

// ---- persistence --------------------------------------------------------------------------------

void HnswGraph::restore(const std::uint8_t* blocks, bool borrow, std::size_t slot_count,
                        const std::int64_t* ids, const std::int32_t* levels, const std::uint32_t* upper,
                        std::size_t upper_len,
                        std::uint32_t entry, int max_level, std::uint64_t insert_count) {
    if (slot_count_ != 0) throw std::invalid_argument("restore: the graph is not empty");
    if (external_ && external_->size() < slot_count)
        throw std::invalid_argument("hnsw file: field 'rerank_rows': " + std::to_string(external_->size()) +
                                    " rows for " + std::to_string(slot_count) + " slots");
    // Validate before use: a corrupted file must raise, never crash.
    std::size_t expected_upper = 0, live = 0;
    int top = -1;
    for (std::size_t s = 0; s < slot_count; ++s) {
        if (levels[s] < -1 || levels[s] > 30) throw std::invalid_argument("hnsw file: field 'levels': level out of range");
        if (levels[s] >= 0) ++live;
        if (ids[s] < -1 || (ids[s] >= 0 && levels[s] < 0))
            throw std::invalid_argument("hnsw file: field 'ids': ids[" + std::to_string(s) + "] = " +
                                        std::to_string(ids[s]) + " does not match its level");
        top = std::max(top, levels[s]);
        expected_upper += static_cast<std::size_t>(std::max(levels[s], 0)) * (1 + M_);
    }
    if (expected_upper != upper_len) throw std::invalid_argument("hnsw file: field 'upper': size does not match the levels");
    if (live ? (entry >= slot_count || levels[entry] != max_level || max_level != top)
             : (entry != kNone || max_level != -1))
        throw std::invalid_argument("hnsw file: field 'entry' / 'max_level': not the top node");
    std::size_t offset = 0;
    for (std::size_t s = 0; s < slot_count; ++s) {
        std::size_t level = static_cast<std::size_t>(std::max(levels[s], 0));
        for (std::size_t l = 0; l <= level; ++l) {
            const std::uint32_t* list = l == 0
                ? reinterpret_cast<const std::uint32_t*>(blocks + s * block_bytes_ + links_offset_)
                : upper + offset + (l - 1) * (1 + M_);
            std::size_t limit = levels[s] < 0 ? 0 : (l == 0 ? M0_ : M_);
            const char* field = l == 0 ? "hnsw file: field 'blocks': " : "hnsw file: field 'upper': ";
            if (list[0] > limit) throw std::invalid_argument(std::string(field) + "link list too long");
            for (std::size_t i = 0; i < list[0]; ++i)
                if (list[i + 1] >= slot_count || levels[list[i + 1]] < static_cast<int>(l))
                    throw std::invalid_argument(std::string(field) + "link to a missing node");
        }
        offset += level * (1 + M_);
    }
    std::vector<std::uint8_t> in_graph(slot_count);
    for (std::size_t s = 0; s < slot_count; ++s) in_graph[s] = levels[s] >= 0;
    idmap_.restore(ids, slot_count, in_graph.data());  // throws on duplicated ids
    if (codes_) borrow = false;  // the node blocks are laid out with the codes in front
    if (borrow) {
        std::free(owned_);
        owned_ = nullptr;
        levels_.assign(slot_count, -1);
        alive_.assign(slot_count, 0);
        upper_.assign(slot_count, {});
        std::unique_ptr<std::atomic<std::uint8_t>[]> locks(new std::atomic<std::uint8_t>[slot_count + 1]);
        for (std::size_t i = 0; i <= slot_count; ++i) locks[i].store(0);
        locks_ = std::move(locks);
        indegree_.reset(new std::atomic<std::uint32_t>[slot_count + 1]);
        capacity_ = slot_count;
        blocks_ = const_cast<std::uint8_t*>(blocks);  // never written: own_blocks() copies first
        point_rows();
    } else {
        reserve(slot_count);
        copy_strided(blocks_, stride_, blocks, block_bytes_, slot_count, block_bytes_);
    }
    slot_count_ = slot_count;
    tombstones_ = 0;
    offset = 0;
    for (std::size_t s = 0; s < slot_count; ++s) {
        levels_[s] = levels[s];
        alive_[s] = ids[s] >= 0;
        tombstones_ += levels[s] >= 0 && ids[s] < 0;
        std::size_t len = static_cast<std::size_t>(std::max(levels[s], 0)) * (1 + M_);
        upper_[s].assign(upper + offset, upper + offset + len);
        offset += len;
    }
    for (std::size_t s = 0; s < slot_count; ++s) indegree_[s].store(0, std::memory_order_relaxed);
    for (std::size_t s = 0; s < slot_count; ++s) {
        if (levels_[s] < 0) continue;
        const std::uint32_t* out = links(static_cast<std::uint32_t>(s), 0);
        for (std::size_t i = 0; i < out[0]; ++i) indegree_[out[i + 1]].fetch_add(1, std::memory_order_relaxed);
    }
    entry_ = entry;
    max_level_ = max_level;
    publish_top();
    insert_count_ = insert_count;
    if (codes_) {  // codes are derived from the rows, never read from a file
        codes_->own.resize(capacity_ * codes_->code_bytes);
        const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
        const std::size_t chunk = 256, tasks = (slot_count + chunk - 1) / chunk;
        parallel_for(tasks, threads, [&](std::size_t task, std::size_t) {
            for (std::size_t s = task * chunk; s < std::min(slot_count, (task + 1) * chunk); ++s)
                if (levels_[s] >= 0) encode_code(static_cast<std::uint32_t>(s));
        });
        for (std::size_t s = 0; s < slot_count; ++s)
            if (levels_[s] >= 0) sync_codes(static_cast<std::uint32_t>(s));
    }
}

}  // namespace simdex
