// RaBitQ index core: lists of fast-scan codes, search with bounds (see rabitq_index.hpp).
#include "index/rabitq_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "index/exact.hpp"
#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {

namespace {

// A selection entry carries its slot and the float bits of its error in the int64 id.
inline std::int64_t pack(std::uint32_t slot, float error) {
    std::uint32_t bits;
    std::memcpy(&bits, &error, 4);
    return static_cast<std::int64_t>((static_cast<std::uint64_t>(bits) << 32) | slot);
}
inline std::uint32_t slot_of(std::int64_t packed) { return static_cast<std::uint32_t>(packed & 0xffffffffu); }
inline float error_of(std::int64_t packed) {
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::uint64_t>(packed) >> 32);
    float e;
    std::memcpy(&e, &bits, 4);
    return e;
}

void add_stats(RaBitQStats& to, const RaBitQStats& from) {
    to.scanned += from.scanned;
    to.refined += from.refined;
    to.candidates += from.candidates;
    to.reranked += from.reranked;
    to.pruned += from.pruned;
}

// Byte position of row r (0..31) within a block's 32-byte group (kernels/pq/pq.hpp).
inline std::size_t byte_of_row(std::size_t r) { return r < 16 ? 2 * r : 2 * (r - 16) + 1; }

}  // namespace

RaBitQIndexCore::RaBitQIndexCore(const KernelTable& table, const RaBitQ& quantizer, Metric metric,
                                 std::size_t nlist, std::shared_ptr<RerankRows> rerank)
    : table_(&table), q_(quantizer), metric_(metric), lists_(nlist), rerank_(std::move(rerank)) {
    if (nlist == 0) throw std::invalid_argument("nlist must be >= 1");
    if (metric == Metric::hamming) throw std::invalid_argument("RaBitQ indexes take l2, ip or cosine");
    if (rerank_ && rerank_->spec().dim != q_.dim()) throw std::invalid_argument("re-rank rows of another dimension");
}

void RaBitQIndexCore::set_centroids(const float* centroids) {
    if (map_.slots() != 0) throw std::invalid_argument("the centroids are fixed once vectors were added");
    const std::size_t dim = q_.dim(), D = q_.padded_dim();
    centroids_.assign(centroids, centroids + nlist() * dim);
    rotated_centroids_.assign(nlist() * D, 0.0);
    for (std::size_t l = 0; l < nlist(); ++l) q_.rotation().apply(*table_, centroids + l * dim, rotated_centroids_.data() + l * D);
    // the queries' centre g: the mean of the centroids (flat: g = c)
    std::vector<double> g(dim, 0.0);
    for (std::size_t l = 0; l < nlist(); ++l)
        for (std::size_t j = 0; j < dim; ++j) g[j] += centroids[l * dim + j];
    for (double& v : g) v /= static_cast<double>(nlist());
    centre_.assign(g.begin(), g.end());
    rotated_centre_.assign(D, 0.0);
    q_.rotation().apply(*table_, centre_.data(), rotated_centre_.data());
    centred_centroids_.resize(nlist() * dim);
    centred_norms_.assign(nlist(), 0.0);
    centre_dots_.assign(nlist(), 0.0);
    inverse_norms_.assign(nlist(), 0.0);
    double gg = 0;
    for (std::size_t j = 0; j < dim; ++j) gg += static_cast<double>(centre_[j]) * centre_[j];
    for (std::size_t l = 0; l < nlist(); ++l) {
        double cc = 0;
        for (std::size_t j = 0; j < dim; ++j) {
            const double c = centroids[l * dim + j];
            const double v = c - g[j];
            centred_centroids_[l * dim + j] = static_cast<float>(v);
            centred_norms_[l] += v * v;
            centre_dots_[l] += static_cast<double>(centre_[j]) * c;
            cc += c * c;
        }
        centre_dots_[l] -= gg;
        inverse_norms_[l] = cc > 0 ? 1.0 / std::sqrt(cc) : 0.0;
    }
    packed_coarse_ = PackedRows(*table_, coarse_rows(), nlist(), dim);
    trained_ = true;
}

void RaBitQIndexCore::grow(List& list, std::size_t rows) {
    const std::size_t P = q_.plane_bytes(), F = block_factors(), exb = (q_.bits() - 1) * P;
    const std::size_t blocks = (rows + 31) / 32;
    if (list.blocks.size() < blocks * P * 32) {
        const std::size_t want = std::max(blocks, list.blocks.size() / (P * 32) * 3 / 2 + 1);
        list.blocks.resize(want * P * 32, 0);
        list.factors.resize(want * F * 32, 0.0f);
    }
    if (list.ex.size() < rows * exb) list.ex.resize(std::max(rows, list.ex.size() / std::max<std::size_t>(exb, 1) * 3 / 2 + 1) * exb);
}

namespace {

// <xbar, v> of a row (quantizer layout) at the 1-bit level (xbar1 = b - 1/2) and, for B > 1,
// at the full level (xbar = u - (2^B - 1) / 2), for a rotated vector v = a - b (D,) (b may be
// nullptr = 0).
void code_products(const RaBitQ& q, const std::uint8_t* row, const double* a, const double* b, double& one_bit,
                   double& full) {
    const std::size_t D = q.padded_dim(), P = q.plane_bytes(), B = static_cast<std::size_t>(q.bits());
    const double mid = (std::ldexp(1.0, q.bits()) - 1.0) / 2.0;
    one_bit = 0;
    full = 0;
    for (std::size_t i = 0; i < D; ++i) {
        const double v = a[i] - (b ? b[i] : 0.0);
        const unsigned sign = (row[i >> 3] >> (i & 7)) & 1u;
        one_bit += (static_cast<double>(sign) - 0.5) * v;
        if (B > 1) {
            unsigned e = 0;
            for (std::size_t j = 1; j < B; ++j) e |= ((row[j * P + (i >> 3)] >> (i & 7)) & 1u) << (j - 1);
            full += (static_cast<double>((sign << (B - 1)) | e) - mid) * v;
        }
    }
}

}  // namespace

void RaBitQIndexCore::put(std::size_t l, std::size_t pos, const std::uint8_t* row, float dot) {
    List& list = lists_[l];
    const std::size_t P = q_.plane_bytes(), F = q_.factor_count(), FI = block_factors(), exb = (q_.bits() - 1) * P;
    const std::size_t b = pos / 32, r = pos % 32, t = byte_of_row(r);
    std::uint8_t* block = list.blocks.data() + b * P * 32;
    for (std::size_t p = 0; p < P; ++p) block[p * 32 + t] = row[p];
    float f[8];
    q_.factors_of(row, f);
    double shift_1bit = 0;
    if (shift_count()) {
        // <xbar, R(c - g)> of both levels: the query is centred on g, the row on its list's c
        double full;
        code_products(q_, row, rotated_centroids_.data() + l * q_.padded_dim(), rotated_centre_.data(), shift_1bit,
                      full);
        f[F] = static_cast<float>(shift_1bit);
        if (q_.bits() > 1) f[F + 1] = static_cast<float>(full);
    }
    if (has_dots()) f[dot_factor()] = dot;
    for (std::size_t j = 0; j < FI; ++j) list.factors[(b * FI + j) * 32 + r] = f[j];
    // the part of a row's 1-bit estimate that does not depend on the query (see
    // update_threshold): add * first + m * scale1 * shift1, first = ||r||^2 (l2 form) or <r, c>
    const double add = metric_ == Metric::l2 ? 1.0 : metric_ == Metric::cosine ? 0.5 : -1.0;
    const double m = metric_ == Metric::l2 ? 2.0 : 1.0;
    const double first = l2_form() ? f[0] : dot;
    list.g_min = std::min(list.g_min, static_cast<float>(add * first + m * f[1] * static_cast<float>(shift_1bit)));
    list.scale1_min = std::min(list.scale1_min, f[1]);
    list.scale1_max = std::max(list.scale1_max, f[1]);
    list.error1_max = std::max(list.error1_max, f[2]);
    if (exb) std::memcpy(list.ex.data() + pos * exb, row + P, exb);
}

void RaBitQIndexCore::row_of(std::size_t slot, std::uint8_t* out) const {
    const List& list = lists_[list_of_[slot]];
    const std::size_t pos = pos_of_[slot];
    const std::size_t P = q_.plane_bytes(), F = q_.factor_count(), exb = (q_.bits() - 1) * P;
    const std::size_t b = pos / 32, r = pos % 32, t = byte_of_row(r);
    const std::uint8_t* block = list.blocks.data() + b * P * 32;
    for (std::size_t p = 0; p < P; ++p) out[p] = block[p * 32 + t];
    if (exb) std::memcpy(out + P, list.ex.data() + pos * exb, exb);
    const std::size_t FI = block_factors();
    float f[5];
    for (std::size_t j = 0; j < F; ++j) f[j] = list.factors[(b * FI + j) * 32 + r];
    std::memcpy(out + q_.code_bytes(), f, 4 * F);
}

void RaBitQIndexCore::copy_position(std::size_t l, std::size_t from, std::size_t to) {
    List& list = lists_[l];
    std::vector<std::uint8_t> row(q_.row_bytes());
    row_of(list.slots[from], row.data());
    const std::size_t FI = block_factors();
    const float dot = has_dots() ? list.factors[((from / 32) * FI + dot_factor()) * 32 + from % 32] : 0.0f;
    put(l, to, row.data(), dot);
    list.slots[to] = list.slots[from];
    pos_of_[list.slots[to]] = static_cast<std::uint32_t>(to);
}

void RaBitQIndexCore::centre_dots(const float* x, const std::int64_t* lists, std::size_t n, float* out) const {
    if (!trained_) throw std::invalid_argument("the index is not trained: call train(x) first");
    const std::size_t dim = q_.dim();
    for (std::size_t i = 0; i < n; ++i) {
        if (lists[i] < 0 || static_cast<std::size_t>(lists[i]) >= nlist())
            throw std::invalid_argument("list " + std::to_string(lists[i]) + " out of range [0, " +
                                        std::to_string(nlist()) + ")");
        const float* c = centroids_.data() + static_cast<std::size_t>(lists[i]) * dim;
        double dot = 0;
        for (std::size_t j = 0; j < dim; ++j) dot += static_cast<double>(x[i * dim + j] - c[j]) * c[j];
        out[i] = static_cast<float>(dot);
    }
}

void RaBitQIndexCore::encode_rows(const float* x, const std::int64_t* lists, std::size_t n, std::size_t threads,
                                  std::uint8_t* rows, float* dots) const {
    if (!trained_) throw std::invalid_argument("the index is not trained: call train(x) first");
    for (std::size_t i = 0; i < n; ++i)
        if (lists[i] < 0 || static_cast<std::size_t>(lists[i]) >= nlist())
            throw std::invalid_argument("list " + std::to_string(lists[i]) + " out of range [0, " +
                                        std::to_string(nlist()) + ")");
    const std::size_t chunk = 128, dim = q_.dim(), rb = q_.row_bytes();
    parallel_for((n + chunk - 1) / chunk, threads, [&](std::size_t task, std::size_t) {
        const std::size_t end = std::min(n, (task + 1) * chunk);
        for (std::size_t i = task * chunk; i < end; ++i)
            q_.encode(*table_, x + i * dim, centroids_.data() + lists[i] * dim, rows + i * rb);
        if (dots && has_dots()) centre_dots(x + task * chunk * dim, lists + task * chunk, end - task * chunk, dots + task * chunk);
    });
}

void RaBitQIndexCore::add(const float* x, const std::uint8_t* rows, const float* dots, const std::int64_t* lists,
                          const std::int64_t* ids, std::int64_t* assigned, std::int64_t* slots_out, std::size_t n) {
    if (has_dots() && n && !dots) throw std::invalid_argument("ip rows need their centre dots");
    const std::int64_t next_id = map_.next_id();
    if (ids) {
        map_.check_new(ids, n);  // (unique within the batch: checked in Python)
    } else {
        map_.next_ids(assigned, n);
    }
    if (rerank_) {  // first: the one step that can fail; the slots are the ones taken below
        std::vector<std::int64_t> slots(n);
        map_.peek_slots(n, slots.data());
        put_rows_of_add(*rerank_, map_, next_id, slots.data(), x, n);
    }
    const std::size_t rb = q_.row_bytes();
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t slot = map_.take_slot();
        if (slot >= list_of_.size()) {
            list_of_.resize(slot + 1);
            pos_of_.resize(slot + 1);
        }
        map_.bind(slot, ids ? ids[i] : assigned[i]);
        List& list = lists_[static_cast<std::size_t>(lists[i])];
        const std::size_t pos = list.size();
        grow(list, pos + 1);
        list.slots.push_back(slot);
        put(static_cast<std::size_t>(lists[i]), pos, rows + i * rb, has_dots() ? dots[i] : 0.0f);
        list_of_[slot] = static_cast<std::uint32_t>(lists[i]);
        pos_of_[slot] = static_cast<std::uint32_t>(pos);
        slots_out[i] = slot;
    }
}

std::size_t RaBitQIndexCore::remove(const std::int64_t* ids, std::size_t n) {
    std::size_t removed = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t s = map_.unbind(ids[i]);
        if (s < 0) continue;
        const std::uint32_t slot = static_cast<std::uint32_t>(s);
        List& list = lists_[list_of_[slot]];
        const std::size_t pos = pos_of_[slot], last = list.size() - 1;
        if (pos != last) copy_position(list_of_[slot], last, pos);
        list.slots.pop_back();
        map_.release(slot);
        ++removed;
    }
    return removed;
}

namespace {

// Everything the fast-scan callback needs for one query and one list.
struct ScanContext {
    const RaBitQ* q = nullptr;
    const RaBitQQuery* query = nullptr;
    const std::uint32_t* slots = nullptr;
    const float* factors = nullptr;  // (nblocks, F, 32)
    const std::uint8_t* blocks = nullptr;
    const std::uint8_t* ex = nullptr;
    std::size_t size = 0, F = 3, FI = 3, P = 0, exb = 0;  // FI: factors per row in a block
    // <b - 1/2, q> ~= sums * inv_scale + offset (the tables' quantisation: lut_error per row)
    float inv_scale = 0, offset = 0, lut_error = 0, qnorm = 0;
    // 1-bit estimate = base + add * first_r - m scale1_r (<xbar1, v> - shift1_r); first_r is
    // factor `first` of the row: ||r||^2 (l2 form: add 1, cosine 0.5) or <r, c> (ip: add -1)
    float m = 2, base = 0, eps0 = 1.9f, add = 1;
    std::size_t first = 0;
    float half = 1;  // l2-form estimates times this (0.5: cosine in the l2 form)
    bool full = false;
    bool shifts = false;  // rows carry shifts (IVF): factors F (1-bit level) and F + 1 (full)
    bool dots = false;    // ip: the full level subtracts <r, c> (factor `first`)
    // block skipping: the kernel sees complemented tables (sums' = smax - sums) and emits
    // only blocks with a row at or under *threshold (see update_threshold)
    float smax = 0, scale = 1;
    float g_min = 0, scale1_min = 0, scale1_max = 0, error1_max = 0;
    std::uint16_t* threshold = nullptr;
    float limit = 0;             // the selection limit *threshold was computed from
    bool threshold_set = false;  // (the kernel's threshold depends on nothing else)
    const SlotFilter* filter = nullptr;
    const std::uint8_t* slot_allow = nullptr;
    TopK* selection = nullptr;
    RaBitQStats* stats = nullptr;
};

// The largest complemented sum a row of the list can have and still enter the selection.
// A row's 1-bit estimate is base + g_r - m scale1_r ip_r with g_r = add first_r + m scale1_r
// shift_r (shift_r = <xbar1, R(c - g)>, 0 for flat). It enters only if its key (estimate, minus
// eps0 * error for B > 1) is below the selection's limit T. With error <= E = m (error1_max
// qnorm + scale1_max lut_error) and g_r >= g_min, that needs  m scale1_r ip_r > N := base +
// g_min - T - eps0 E,
// so ip_r > N / (m scale1_max) (N >= 0) or N / (m scale1_min) (N < 0), and
// ip_r = sums_r / scale + offset gives a lower bound on sums_r.
void update_threshold(ScanContext& c) {
    const float limit = c.selection->threshold();
    if (c.threshold_set && (limit == c.limit || (std::isnan(limit) && std::isnan(c.limit)))) return;  // same bound
    c.threshold_set = true;
    c.limit = limit;
    std::uint32_t t = 0xffff;
    if (std::isfinite(limit)) {
        const float bound = c.full ? c.eps0 * c.m * (c.error1_max * c.qnorm + c.scale1_max * c.lut_error) : 0.0f;
        const float n = c.base + c.g_min - limit - bound;
        const float divisor = c.m * (n >= 0 ? c.scale1_max : c.scale1_min);
        if (divisor > 0) {
            const float sums_min = (n / divisor - c.offset) * c.scale;  // rows need sums > this
            const float complement = c.smax - sums_min + 2.0f;         // + rounding margin
            t = complement <= 0 ? 0u : complement >= 65535.0f ? 0xffffu : static_cast<std::uint32_t>(complement);
        }
    }
    *c.threshold = static_cast<std::uint16_t>(t);
}

// One block of 32 rows: only the rows the kernel let through are estimated, each tested
// against the selection's current limit (computing all 32 estimates side by side in a
// vectorised loop first measured 1% slower: ~3 rows per call pass the kernel's bound).
// (Full = c.full: B > 1 refines each row that can enter from its extended code; an instance
// per level, so the 1-bit path has no test of it per row)
template <bool Full>
void scan_block(void* raw, std::size_t, std::size_t block, std::uint32_t mask, const std::uint16_t* sums) {
    ScanContext& c = *static_cast<ScanContext*>(raw);
    static const float no_shift[32] = {};
    const float* fb = c.factors + block * c.FI * 32;
    const float* first_term = fb + c.first * 32;  // ||r||^2 or <r, c>
    const float* scale1 = fb + 32;
    const float* error1 = fb + 64;
    const float* shift1 = c.shifts ? fb + c.F * 32 : no_shift;
    auto error_of_row = [&](std::size_t r) {
        const float code = error1[r] * c.qnorm, table = scale1[r] * c.lut_error;
        return c.m * std::sqrt(code * code + table * table);
    };
    // only the rows the kernel let through (their sums pass the list's threshold): usually a
    // few per block once the selection is full
    const std::size_t first = block * 32;
    const std::size_t rows = std::min<std::size_t>(32, c.size - first);
    std::uint32_t below = mask & (rows == 32 ? 0xffffffffu : ((1u << rows) - 1));
    c.stats->scanned += static_cast<std::uint64_t>(__builtin_popcount(below));
    std::uint8_t sign[1024];
    bool pushed = false;
    for (; below; below &= below - 1) {
        const std::size_t r = static_cast<std::size_t>(__builtin_ctz(below));
        const float ip = (c.smax - static_cast<float>(sums[r])) * c.inv_scale + c.offset - shift1[r];
        const float estimate = c.base + c.add * first_term[r] - c.m * scale1[r] * ip;
        const float key = Full ? estimate - c.eps0 * error_of_row(r) : estimate;
        if (!(key < c.selection->threshold())) continue;
        const std::uint32_t slot = c.slots[first + r];
        if (c.slot_allow ? !c.slot_allow[slot] : (c.filter && !c.filter->allows(slot))) continue;
        if constexpr (!Full) {
            c.selection->push(estimate, pack(slot, error_of_row(r)));
            pushed = true;
            continue;
        }
        const std::uint8_t* b = c.blocks + block * c.P * 32 + byte_of_row(r);
        for (std::size_t p = 0; p < c.P; ++p) sign[p] = b[p * 32];
        float f[5];
        for (std::size_t j = 0; j < c.F; ++j) f[j] = fb[j * 32 + r];
        RaBitQEstimate e = c.q->estimate_parts(*c.query, sign, c.ex + (first + r) * c.exb, f);
        // residual form: the query planes are of R(q - g); <xbar, R(q - c)> = that - shift
        // (l2 form: -2 scale <r, q - c>, ip: -scale <r, q - c> - <r, c>)
        if (c.shifts) e.distance += (c.dots ? 1.0f : 2.0f) * f[3] * fb[(c.F + 1) * 32 + r];
        if (c.dots) e.distance -= first_term[r];
        ++c.stats->refined;
        c.selection->push(e.distance * c.half, pack(slot, e.error * c.half));
        pushed = true;
    }
    if (pushed) update_threshold(c);  // (only a push moves the selection's limit)
}

// The callback of a kernel pass over several queries: context = their ScanContexts.
template <bool Full>
void scan_block_of(void* raw, std::size_t query, std::size_t block, std::uint32_t mask, const std::uint16_t* sums) {
    scan_block<Full>(static_cast<ScanContext*>(raw) + query, query, block, mask, sums);
}

// A list's probe score and its number as one integer in the order of the (score, list) pairs
// (scores are not NaN; -0 counts as +0): integer compares select the probes faster.
inline std::uint64_t probe_key(float score, std::size_t list) {
    const float x = score + 0.0f;  // -0 -> +0
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<std::uint64_t>(u) << 32) | static_cast<std::uint32_t>(list);
}

// sum_i a[i] * b[i] (b = nullptr: sum_i a[i]) in double, as four interleaved partial sums: a
// single running sum makes every add wait for the one before it (per query: <q, g> over dim
// and the sum of R(q - g) over D).
template <class A>
double sum_products(const A* a, const float* b, std::size_t n) {
    double part[4] = {0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (std::size_t j = 0; j < 4; ++j)
            part[j] += static_cast<double>(a[i + j]) * (b ? static_cast<double>(b[i + j]) : 1.0);
    for (; i < n; ++i) part[0] += static_cast<double>(a[i]) * (b ? static_cast<double>(b[i]) : 1.0);
    return (part[0] + part[1]) + (part[2] + part[3]);
}

}  // namespace

void RaBitQIndexCore::search(const float* queries, std::size_t nq, std::size_t k, std::size_t nprobe,
                             std::size_t candidates, float eps0, const IdFilter& filter, std::size_t threads,
                             float* out_distances, std::int64_t* out_ids, RaBitQStats& stats) const {
    if (!rerank_) {
        scan(queries, nq, k, nprobe, candidates, eps0, filter, nullptr, threads, out_distances, out_ids, stats);
        return;
    }
    std::shared_lock<RwLock> rows_lock(rerank_->lock());  // after the core's lock (the caller's)
    const RerankSource source{rerank_->data(), rerank_->count(), rerank_->spec()};
    scan(queries, nq, k, nprobe, candidates, eps0, filter, &source, threads, out_distances, out_ids, stats);
}

void RaBitQIndexCore::scan(const float* queries, std::size_t nq, std::size_t k, std::size_t nprobe,
                           std::size_t candidates, float eps0, const IdFilter& filter, const RerankSource* rerank,
                           std::size_t threads, float* out_distances, std::int64_t* out_ids,
                           RaBitQStats& stats) const {
    const std::size_t dim = q_.dim(), D = q_.padded_dim(), P = q_.plane_bytes(), m4 = D / 4;
    const std::size_t F = q_.factor_count(), exb = (q_.bits() - 1) * P;
    // The residual form. The row holds r = x - c against its list's centre c; the query is
    // centred on one shared g (the mean of the centroids) and rotated once, v = R(q - g), so
    // its tables and planes serve every list, and <r, q - c> ~= scale <xbar, v> - scale <xbar,
    // R(c - g)> (the second term is stored per row: see put). Then l2 = ||r||^2 + ||q - c||^2 -
    // 2 <r, q - c>, cosine (unit rows and queries) = l2 / 2, and ip = 1 - <c, q> - <r, c> -
    // <r, q - c> with <r, c> exact per row. The estimate's error scales with ||q - c||,
    // smaller than ||q|| (as FAISS centres the query).
    const bool l2 = l2_form();
    const float half = metric_ == Metric::l2 ? 1.0f : 0.5f;  // l2-form distances -> cosine
    nprobe = std::min(std::max<std::size_t>(nprobe, 1), nlist());
    candidates = std::max(candidates, k);
    if (P > 1024) throw std::invalid_argument("RaBitQ indexes support dim <= 8192");
    if (map_.size() == 0 || !trained_) {
        for (std::size_t i = 0; i < nq * k; ++i) out_distances[i] = std::numeric_limits<float>::infinity(), out_ids[i] = -1;
        return;
    }
    std::vector<RaBitQStats> per_worker(std::max<std::size_t>(threads, 1) + 1);
    // coarse scores of every query against every centroid in one GEMM (IVF)
    // (l2 / cosine: of q - g against c - g, so ||q - c||^2 = ||q - g||^2 - 2 <q - g, c - g> +
    // ||c - g||^2 cancels little; ip: <q, c>, exact where the estimate needs it, and ||q - c||
    // for the bounds only)
    // (nq, nlist), every entry written by the GEMM: allocated without zero-filling
    std::unique_ptr<float[]> coarse_scores;
    if (nlist() > 1) {
        coarse_scores.reset(new float[nq * nlist()]);
        if (l2) {
            std::unique_ptr<float[]> centred(new float[nq * dim]);
            for (std::size_t i = 0; i < nq; ++i)
                for (std::size_t j = 0; j < dim; ++j) centred[i * dim + j] = queries[i * dim + j] - centre_[j];
            inner_products(*table_, packed_coarse_, coarse_rows(), nlist(), centred.get(), nq, dim, threads,
                           coarse_scores.get());
        } else {
            inner_products(*table_, packed_coarse_, coarse_rows(), nlist(), queries, nq, dim, threads, coarse_scores.get());
        }
    }
    const float* coarse = coarse_scores.get();
    // Per query: filter, probes, R(q - g) or R q, its tables and planes, the selection.
    struct QueryState {
        std::size_t qi = 0;
        std::optional<SlotMaskPool::Lease> mask;
        const std::uint8_t* slot_allow = nullptr;
        std::vector<std::uint32_t> probes;  // lists, nearest first
        std::vector<float> probe_coarse;    // the coarse score of each probe (IVF)
        std::vector<std::uint64_t> scores;  // (nlist,) every list's probe_key, kept sized
        std::vector<double> rotated;
        RaBitQQuery prepared;
        std::vector<std::uint8_t> lut;
        float bias = 0, scale = 1, smax = 0;
        double sum_q = 0, centred_norm2 = 0, qg = 0;  // qg = <q, g> (cosine, ip)
        std::optional<TopK> selection;
    };
    const SlotFilter by_id{nullptr, map_.ids(), filter.id_mask, filter.id_mask_len};
    // batches (IVF, several queries, no per-query filter lists; see the end): per query the
    // kSeed nearest probes in order, the others as a set (scanned list by list)
    constexpr std::size_t kSeed = 2, kGroup = 8;
    const bool batched = nlist() > 1 && nq >= 8 && nprobe > kSeed && nprobe <= 0xffff && !filter.lists;
    auto setup = [&](QueryState& s, std::size_t qi) {
        s.qi = qi;
        const float* query = queries + qi * dim;
        s.mask.reset();
        s.slot_allow = nullptr;
        if (filter.lists) {
            s.mask.emplace(masks_);
            (*s.mask)->build(map_, filter, filter.list_of(qi));
            s.slot_allow = (*s.mask)->allow.data();
        }
        // probes: l2 ranks lists by ||c - g||^2 - 2 <q - g, c - g> (= ||q - c||^2 - ||q - g||^2:
        // the k-means cells), cosine by -<q, c> / ||c|| (<q, c> = <q - g, c - g> + <q, g> +
        // <g, c> - ||g||^2; the rows were assigned the same way), ip by -<q, c>
        // (scores keeps its size across queries: no zero-filling of nlist pairs per query)
        std::vector<std::uint64_t>& scores = s.scores;
        scores.resize(nlist());
        if (nlist() > 1) {
            const float* row = coarse + qi * nlist();
            if (metric_ == Metric::l2) {
                for (std::size_t l = 0; l < nlist(); ++l)
                    scores[l] = probe_key(static_cast<float>(centred_norms_[l]) - 2 * row[l], l);
            } else if (metric_ == Metric::cosine) {
                const double qg = sum_products(query, centre_.data(), dim);
                for (std::size_t l = 0; l < nlist(); ++l)
                    scores[l] = probe_key(-static_cast<float>((row[l] + qg + centre_dots_[l]) * inverse_norms_[l]), l);
                s.qg = qg;
            } else {
                for (std::size_t l = 0; l < nlist(); ++l) scores[l] = probe_key(-row[l], l);
                s.qg = sum_products(query, centre_.data(), dim);
            }
        } else {
            scores[0] = probe_key(0.0f, 0);
        }
        // the nprobe smallest (score, list) pairs in ascending order: a total order (lists are
        // distinct), so any selection gives the same probes; a bounded heap for few probes
        // (a batch orders only its seeds: the other probes are scanned in list order)
        const auto chosen = scores.begin() + static_cast<std::ptrdiff_t>(nprobe);
        if (nprobe * 8 <= nlist()) {
            std::partial_sort(scores.begin(), chosen, scores.end());
        } else {
            select_smallest(scores.data(), nlist(), nprobe);
            const auto ordered = batched ? scores.begin() + static_cast<std::ptrdiff_t>(kSeed) : chosen;
            if (ordered != chosen) select_smallest(scores.data(), nprobe, kSeed);
            std::sort(scores.begin(), ordered);
        }
        // (with each probe's coarse score: the row of every query's scores is in cache now, not
        // when a batch reaches the list)
        s.probes.resize(nprobe);
        s.probe_coarse.resize(nprobe);
        for (std::size_t pi = 0; pi < nprobe; ++pi) {
            s.probes[pi] = static_cast<std::uint32_t>(scores[pi]);
            s.probe_coarse[pi] = nlist() > 1 ? coarse[qi * nlist() + s.probes[pi]] : 0.0f;
        }
        // R(q - g): the same for every list, so the tables and query planes are built once; per
        // list only the constant and ||q - c|| change
        s.rotated.resize(D);
        q_.rotation().apply(*table_, query, s.rotated.data());
        q_.prepare_rotated(s.rotated.data(), rotated_centre_.data(), 0.0, l2, s.prepared, q_.bits() > 1);
        s.lut.resize(m4 * 16);
        s.scale = table_->rabitq_tables(s.prepared.rotated.data(), m4, s.lut.data(), &s.bias, &s.smax);
        s.sum_q = sum_products(s.prepared.rotated.data(), nullptr, D);
        s.centred_norm2 = s.prepared.norm * s.prepared.norm;  // ||q - g||^2
        s.selection.emplace(candidates);
    };
    // The scan context of probe pi of a query (sets the query's per-list constant).
    auto context = [&](QueryState& s, std::size_t pi, RaBitQStats& st, std::uint16_t* threshold, ScanContext& ctx) {
        const std::size_t l = s.probes[pi];
        const List& list = lists_[l];
        RaBitQQuery& prepared = s.prepared;
        if (l2) {
            // ||q - c||^2 = ||q - g||^2 + ||c - g||^2 - 2 <q - g, c - g>
            const double qc = nlist() == 1 ? s.centred_norm2  // g = c
                                           : std::max(0.0, s.centred_norm2 + centred_norms_[l] -
                                                               2.0 * static_cast<double>(s.probe_coarse[pi]));
            prepared.constant = qc;
            prepared.norm = std::sqrt(qc);
        } else {
            // <q, c>: flat: in double here (the same on every tier), IVF: from the coarse GEMM
            double qc = 0;
            if (nlist() == 1) {
                for (std::size_t j = 0; j < dim; ++j) qc += static_cast<double>(queries[s.qi * dim + j]) * centroids_[j];
            } else {
                qc = s.probe_coarse[pi];
            }
            prepared.constant = 1.0 - qc;
            // ||q - c||^2 = ||q - g||^2 + ||c - g||^2 - 2 <q - g, c - g> (flat: g = c), with
            // <q - g, c - g> = <q, c> - <q, g> - (<g, c> - ||g||^2): the bounds' scale
            prepared.norm = nlist() == 1 ? std::sqrt(s.centred_norm2)
                                         : std::sqrt(std::max(0.0, s.centred_norm2 + centred_norms_[l] -
                                                                       2.0 * (qc - s.qg - centre_dots_[l])));
        }
        ctx.q = &q_;
        ctx.query = &prepared;
        ctx.slots = list.slots.data();
        ctx.factors = list.factors.data();
        ctx.blocks = list.blocks.data();
        ctx.ex = list.ex.data();
        ctx.size = list.size();
        ctx.F = F;
        ctx.FI = block_factors();
        ctx.P = P;
        ctx.exb = exb;
        ctx.inv_scale = 1.0f / s.scale;
        ctx.offset = static_cast<float>(s.bias - 0.5 * s.sum_q);
        ctx.lut_error = static_cast<float>(std::sqrt(static_cast<double>(m4) / 12.0) / s.scale);
        ctx.qnorm = static_cast<float>(prepared.norm);
        ctx.add = l2 ? half : -1.0f;
        ctx.first = l2 ? 0 : dot_factor();
        ctx.shifts = shift_count() > 0;
        ctx.dots = has_dots();
        ctx.m = l2 ? 2.0f * half : 1.0f;
        ctx.base = static_cast<float>(prepared.constant) * (l2 ? half : 1.0f);
        ctx.half = l2 ? half : 1.0f;
        ctx.eps0 = eps0;
        ctx.full = q_.bits() > 1;
        ctx.filter = filter.id_mask ? &by_id : nullptr;
        ctx.slot_allow = s.slot_allow;
        ctx.selection = &*s.selection;
        ctx.stats = &st;
        ctx.smax = s.smax;
        ctx.scale = s.scale;
        ctx.g_min = list.g_min;
        ctx.scale1_min = list.scale1_min;
        ctx.scale1_max = list.scale1_max;
        ctx.error1_max = list.error1_max;
        ctx.threshold = threshold;
        ctx.threshold_set = false;  // (ctx may be reused from another query or list)
        update_threshold(ctx);
    };
    // the callback reads the factors and slots of the blocks the kernel lets through: start
    // loading them before the kernel streams the codes
    auto prefetch_list = [&](const List& list) {
        const std::size_t nblocks = (list.size() + 31) / 32, bytes = nblocks * block_factors() * 128;
        const char* f = reinterpret_cast<const char*>(list.factors.data());
        for (std::size_t b = 0; b < bytes; b += 64) __builtin_prefetch(f + b);
        const char* slots = reinterpret_cast<const char*>(list.slots.data());
        for (std::size_t b = 0; b < list.size() * 4; b += 64) __builtin_prefetch(slots + b);
    };
    auto scan_one = [&](QueryState& s, std::size_t pi, RaBitQStats& st) {
        const List& list = lists_[s.probes[pi]];
        if (list.size() == 0) return;
        ScanContext ctx;
        std::uint16_t threshold = 0xffff;
        context(s, pi, st, &threshold, ctx);
        prefetch_list(list);
        const std::uint8_t* lut = s.lut.data();
        table_->pq.fastscan_tables_u4(list.blocks.data(), (list.size() + 31) / 32, m4, &lut, 1, &threshold,
                                      q_.bits() > 1 ? scan_block<true> : scan_block<false>, &ctx);
    };
    // Candidates -> exact re-rank (or the estimates) -> user ids.
    auto finish = [&](QueryState& s, RaBitQStats& st) {
        const std::size_t qi = s.qi;
        std::vector<float> cd(candidates);
        std::vector<std::int64_t> cid(candidates);
        s.selection->write_sorted(cd.data(), cid.data());
        float* od = out_distances + qi * k;
        std::int64_t* oi = out_ids + qi * k;
        if (rerank) {
            QueryScorer scorer(*table_, rerank->spec);
            scorer.set_query(queries + qi * dim);
            TopK exact(k);
            // the rows are scattered over the store: prefetch a few candidates ahead so their
            // cache lines load in parallel (the re-rank is otherwise bound by memory latency)
            const std::size_t row_bytes = rerank->spec.row_bytes;
            auto prefetch = [&](std::size_t c) {
                if (c >= candidates || cid[c] < 0) return;
                const std::uint32_t slot = slot_of(cid[c]);
                if (slot >= rerank->n) return;
                const std::uint8_t* row = rerank->data + slot * row_bytes;
                for (std::size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + b);
            };
            constexpr std::size_t kAhead = 8;
            for (std::size_t c = 0; c < kAhead; ++c) prefetch(c);
            for (std::size_t c = 0; c < candidates && cid[c] >= 0; ++c) {
                prefetch(c + kAhead);
                ++st.candidates;
                const std::uint32_t slot = slot_of(cid[c]);
                if (cd[c] - eps0 * error_of(cid[c]) >= exact.threshold()) {
                    ++st.pruned;
                    continue;
                }
                if (slot >= rerank->n)
                    throw std::invalid_argument("slot " + std::to_string(slot) + " has no row in the re-rank store of " +
                                                std::to_string(rerank->n));
                exact.push(scorer.distance(rerank->data + slot * row_bytes), static_cast<std::int64_t>(slot));
                ++st.reranked;
            }
            exact.write_sorted(od, oi);
        } else {
            for (std::size_t c = 0; c < k; ++c) {
                od[c] = c < candidates ? cd[c] : std::numeric_limits<float>::infinity();
                oi[c] = c < candidates && cid[c] >= 0 ? static_cast<std::int64_t>(slot_of(cid[c])) : -1;
            }
        }
        for (std::size_t c = 0; c < k; ++c)
            if (oi[c] >= 0) oi[c] = map_.id(static_cast<std::size_t>(oi[c]));
        s.mask.reset();
    };
    // Batches (IVF, several queries, no per-query filter lists): a chunk of queries scans its
    // first kSeed probes query by query (their nearest lists: the selections fill with good
    // candidates), then the rest list by list, up to 8 queries per kernel pass, so each block
    // of codes is loaded and split into nibbles once for all of them.
    // (chunks of 16..256 queries, at least 4 per thread: a worker that is descheduled while it
    // holds a chunk delays the whole call by that chunk)
    const std::size_t kChunk = std::clamp<std::size_t>(nq / (4 * std::max<std::size_t>(threads, 1)), 16, 256);
    // query states kept per worker across its tasks (their buffers are allocated once)
    // (kChunk states each: every task of a call needs at most that many)
    std::vector<std::unique_ptr<QueryState[]>> pools(std::max<std::size_t>(threads, 1) + 1);
    auto pool_of = [&](std::size_t worker) -> QueryState* {
        std::unique_ptr<QueryState[]>& pool = pools[std::min(worker, pools.size() - 1)];
        if (!pool) pool.reset(new QueryState[kChunk]);
        return pool.get();
    };
    if (!batched) {
        parallel_for(nq, threads, [&](std::size_t qi, std::size_t worker) {
            RaBitQStats st;  // counted locally: workers' counters side by side would share a line
            QueryState& s = pool_of(worker)[0];
            setup(s, qi);
            for (std::size_t pi = 0; pi < s.probes.size(); ++pi) scan_one(s, pi, st);
            finish(s, st);
            add_stats(per_worker[std::min(worker, per_worker.size() - 1)], st);
        });
    } else {
        const std::size_t chunks = (nq + kChunk - 1) / kChunk;
        parallel_for(chunks, threads, [&](std::size_t chunk, std::size_t worker) {
            RaBitQStats st;
            const std::size_t q0 = chunk * kChunk, count = std::min(kChunk, nq - q0);
            QueryState* states = pool_of(worker);
            for (std::size_t i = 0; i < count; ++i) {
                setup(states[i], q0 + i);
                for (std::size_t pi = 0; pi < kSeed; ++pi) scan_one(states[i], pi, st);
            }
            // the other probes grouped by list (a counting sort; within a list by query, as
            // each query probes a list at most once): (query << 16 | probe) per entry
            std::vector<std::uint32_t> start(nlist() + 1, 0), by_list(count * (nprobe - kSeed));
            for (std::size_t i = 0; i < count; ++i)
                for (std::size_t pi = kSeed; pi < nprobe; ++pi) ++start[states[i].probes[pi] + 1];
            for (std::size_t l = 0; l < nlist(); ++l) start[l + 1] += start[l];
            {
                std::vector<std::uint32_t> next(start.begin(), start.end() - 1);
                for (std::size_t i = 0; i < count; ++i)
                    for (std::size_t pi = kSeed; pi < nprobe; ++pi)
                        by_list[next[states[i].probes[pi]]++] = static_cast<std::uint32_t>((i << 16) | pi);
            }
            const std::uint8_t* tables[kGroup];
            ScanContext ctxs[kGroup];
            std::uint16_t thresholds[kGroup];
            for (std::size_t l = 0; l < nlist(); ++l) {
                const std::size_t a = start[l], b = start[l + 1];
                const List& list = lists_[l];
                if (a == b || list.size() == 0) continue;
                prefetch_list(list);
                for (std::size_t g0 = a; g0 < b; g0 += kGroup) {
                    const std::size_t g = std::min(kGroup, b - g0);
                    for (std::size_t j = 0; j < g; ++j) {
                        QueryState& s = states[by_list[g0 + j] >> 16];
                        context(s, by_list[g0 + j] & 0xffffu, st, &thresholds[j], ctxs[j]);
                        tables[j] = s.lut.data();
                    }
                    table_->pq.fastscan_tables_u4(list.blocks.data(), (list.size() + 31) / 32, m4, tables, g,
                                                  thresholds, q_.bits() > 1 ? scan_block_of<true> : scan_block_of<false>, ctxs);
                }
            }
            for (std::size_t i = 0; i < count; ++i) finish(states[i], st);
            add_stats(per_worker[std::min(worker, per_worker.size() - 1)], st);
        });
    }
    for (const RaBitQStats& s : per_worker) add_stats(stats, s);
}

void RaBitQIndexCore::export_rows(std::uint8_t* rows, std::int64_t* lists, std::int64_t* slots, float* dots) const {
    std::size_t i = 0;
    const std::size_t rb = q_.row_bytes(), FI = block_factors();
    for (std::size_t l = 0; l < nlist(); ++l)
        for (std::uint32_t slot : lists_[l].slots) {
            row_of(slot, rows + i * rb);
            const std::size_t pos = pos_of_[slot];
            if (dots && has_dots()) dots[i] = lists_[l].factors[((pos / 32) * FI + dot_factor()) * 32 + pos % 32];
            lists[i] = static_cast<std::int64_t>(l);
            slots[i] = slot;
            ++i;
        }
}

void RaBitQIndexCore::restore(const std::int64_t* ids, std::size_t slot_count, std::int64_t next_id,
                              const std::uint8_t* rows, const float* dots, const std::int64_t* lists,
                              const std::int64_t* slots, std::size_t n) {
    if (rerank_ && rerank_->size() != slot_count)
        throw std::invalid_argument("index file: " + std::to_string(rerank_->size()) + " re-rank rows for " +
                                    std::to_string(slot_count) + " slots");
    IdMap map;
    map.restore(ids, slot_count, nullptr);
    map.set_next_id(next_id);
    if (map.size() != n)
        throw std::invalid_argument("index file: " + std::to_string(n) + " code rows for " + std::to_string(map.size()) +
                                    " live ids");
    std::vector<std::uint8_t> seen(slot_count, 0);
    for (std::size_t i = 0; i < n; ++i) {
        if (lists[i] < 0 || static_cast<std::size_t>(lists[i]) >= nlist())
            throw std::invalid_argument("index file: list " + std::to_string(lists[i]) + " out of range");
        if (slots[i] < 0 || static_cast<std::size_t>(slots[i]) >= slot_count || ids[slots[i]] < 0 || seen[slots[i]])
            throw std::invalid_argument("index file: code row " + std::to_string(i) +
                                        " names a slot that is not live or appears twice");
        seen[slots[i]] = 1;
        if (dots && has_dots() && !std::isfinite(dots[i]))
            throw std::invalid_argument("index file: the centre dot of code row " + std::to_string(i) + " is not finite");
    }
    map_ = std::move(map);
    for (List& list : lists_) list = List();
    list_of_.assign(slot_count, 0);
    pos_of_.assign(slot_count, 0);
    const std::size_t rb = q_.row_bytes();
    for (std::size_t i = 0; i < n; ++i) {
        List& list = lists_[static_cast<std::size_t>(lists[i])];
        const std::size_t pos = list.size();
        grow(list, pos + 1);
        list.slots.push_back(static_cast<std::uint32_t>(slots[i]));
        float dot = 0.0f;
        if (has_dots() && dots) {
            dot = dots[i];
        } else if (has_dots()) {  // a version-1 file: the code's own estimate of <r, c>
            const std::uint8_t* row = rows + i * rb;
            float f[5];
            q_.factors_of(row, f);
            double one_bit, full;
            code_products(q_, row, rotated_centroids_.data() + static_cast<std::size_t>(lists[i]) * q_.padded_dim(),
                          nullptr, one_bit, full);
            dot = static_cast<float>(q_.bits() == 1 ? f[1] * one_bit : f[3] * full);
        }
        put(static_cast<std::size_t>(lists[i]), pos, rows + i * rb, dot);
        list_of_[slots[i]] = static_cast<std::uint32_t>(lists[i]);
        pos_of_[slots[i]] = static_cast<std::uint32_t>(pos);
    }
}

std::size_t RaBitQIndexCore::nbytes() const {
    std::size_t total = map_.nbytes() + centroids_.capacity() * 4 + rotated_centroids_.capacity() * 8 +
                        (list_of_.capacity() + pos_of_.capacity()) * 4 + (rerank_ ? rerank_->nbytes() : 0) +
                        packed_coarse_.nbytes();
    for (const List& l : lists_)
        total += l.slots.capacity() * 4 + l.blocks.capacity() + l.factors.capacity() * 4 + l.ex.capacity();
    return total;
}

}  // namespace simdex
