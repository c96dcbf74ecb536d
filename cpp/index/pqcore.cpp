// PQIndex / IVFPQIndex cores (see pqcore.hpp).
#include "index/pqcore.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "index/exact.hpp"
#include "parallel.hpp"

namespace simdex {

namespace {
constexpr std::size_t kQueryBatch = 256;  // queries per table batch: bounds the (b, m, ksub) tables

// What restoring a PQ / IVF-PQ core checks and rebuilds the same way: the id per slot (-1 =
// removed; removed slots stay dead, never reused), the re-rank rows' count, the training.
IdMap restored_ids(const char* what, bool trained, const RerankRows* rerank, const std::int64_t* ids,
                   std::size_t slots, std::int64_t next_id) {
    if (slots && !trained) throw std::invalid_argument(std::string(what) + " index file: rows without training");
    if (rerank && rerank->size() != slots)
        throw std::invalid_argument(std::string(what) + " index file: " + std::to_string(rerank->size()) +
                                    " re-rank rows for " + std::to_string(slots) + " slots");
    for (std::size_t i = 0; i < slots; ++i)
        if (ids[i] < -1)
            throw std::invalid_argument(std::string(what) + " index file: id " + std::to_string(ids[i]) + " is negative");
    IdMap map;
    std::vector<std::uint8_t> in_use(slots, 1);
    map.restore(ids, slots, in_use.data());
    map.set_next_id(next_id);
    return map;
}

void alive_from_ids(const std::int64_t* ids, std::size_t slots, std::vector<std::uint8_t>& alive) {
    alive.assign(slots, 0);
    for (std::size_t s = 0; s < slots; ++s) alive[s] = ids[s] >= 0;
}

}  // namespace

// ---- PqCodebooks -------------------------------------------------------------------------
PqCodebooks::PqCodebooks(std::size_t dim, std::size_t m, int nbits)
    : dim_(dim), m_(m), ksub_(nbits == 8 ? 256 : 16), dsub_(m ? dim / m : 0) {
    if (nbits != 8 && nbits != 4) throw std::invalid_argument("nbits must be 8 or 4");
    if (m == 0 || dsub_ * m != dim) throw std::invalid_argument("dim must be a multiple of m");
}

void PqCodebooks::set(const float* books, const float* rotation) {
    const std::size_t total = m_ * ksub_ * dsub_;
    books_.assign(books, books + total);
    books_t_.assign(total, 0.0f);
    norms_.assign(m_ * ksub_, 0.0f);
    for (std::size_t j = 0; j < m_; ++j)
        for (std::size_t c = 0; c < ksub_; ++c) {
            const float* v = books + (j * ksub_ + c) * dsub_;
            float norm = 0;
            for (std::size_t t = 0; t < dsub_; ++t) {
                books_t_[(j * dsub_ + t) * ksub_ + c] = v[t];
                norm += v[t] * v[t];
            }
            norms_[j * ksub_ + c] = norm;
        }
    rot_t_.clear();
    if (rotation) {
        rot_t_.resize(dim_ * dim_);
        for (std::size_t i = 0; i < dim_; ++i)
            for (std::size_t j = 0; j < dim_; ++j) rot_t_[j * dim_ + i] = rotation[i * dim_ + j];
    }
}

PqBooks PqCodebooks::view() const {
    PqBooks b;
    b.books = books_.data();
    b.books_t = books_t_.data();
    b.norms = norms_.data();
    b.m = m_;
    b.ksub = ksub_;
    b.dsub = dsub_;
    return b;
}

const float* PqCodebooks::rotate(const KernelTable& kernels, const float* x, std::size_t n, std::size_t threads,
                                 std::vector<float>& buffer) const {
    if (rot_t_.empty()) return x;
    buffer.resize(n * dim_);
    inner_products(kernels, rot_t_.data(), dim_, x, n, dim_, threads, buffer.data());  // (x R)_ij = <x_i, R^T_j>
    return buffer.data();
}

void PqCodebooks::encode_rotated(const KernelTable& kernels, const float* xr, std::size_t n, std::size_t threads,
                                 std::uint8_t* codes) const {
    if (!trained()) throw std::invalid_argument("the quantizer is not trained");
    std::vector<float> sub(n * dsub_), dist(n);
    std::vector<std::int64_t> labels(n);
    for (std::size_t j = 0; j < m_; ++j) {
        for (std::size_t i = 0; i < n; ++i)
            std::memcpy(sub.data() + i * dsub_, xr + i * dim_ + j * dsub_, dsub_ * 4);
        nearest_centroids(kernels, sub.data(), n, dsub_, books_.data() + j * ksub_ * dsub_, ksub_, threads,
                          labels.data(), dist.data());
        for (std::size_t i = 0; i < n; ++i) codes[i * m_ + j] = static_cast<std::uint8_t>(labels[i]);
    }
}

// ---- PqCore ------------------------------------------------------------------------------
PqCore::PqCore(const KernelTable& table, std::size_t dim, std::size_t m, int nbits, Metric metric,
               std::shared_ptr<RerankRows> rerank)
    : table_(&table), books_(dim, m, nbits), nbits_(nbits), l2_(metric == Metric::l2), rerank_(std::move(rerank)) {
    if (metric == Metric::hamming) throw std::invalid_argument("PQ metrics are l2, ip, cosine");
    if (rerank_ && rerank_->spec().dim != dim) throw std::invalid_argument("re-rank rows of another dimension");
}

void PqCore::set_trained(const float* books, const float* rotation) {
    if (map_.size() != 0)
        throw std::invalid_argument("the index already holds vectors encoded with its current training");
    books_.set(books, rotation);
}

void PqCore::encode(const float* x, std::size_t n, std::size_t threads, std::uint8_t* codes) const {
    std::vector<float> rotated;
    books_.encode_rotated(*table_, books_.rotate(*table_, x, n, threads, rotated), n, threads, codes);
}

std::size_t PqCore::code_bytes_for(std::size_t n) const {
    const std::size_t m = books_.m();
    return nbits_ == 8 ? n * m : (n + 31) / 32 * fastscan_m4(m) * 16;
}

void PqCore::add(const float* x, const std::uint8_t* codes, const std::int64_t* ids, std::int64_t* assigned,
                 std::size_t n) {
    if (!books_.trained()) throw std::invalid_argument("the index is not trained");
    const std::size_t m = books_.m();
    if (nbits_ == 4)
        for (std::size_t i = 0; i < n * m; ++i)
            if (codes[i] > 15) throw std::invalid_argument("4-bit codes must be < 16");
    const std::int64_t next_before = map_.next_id();
    if (ids) {
        map_.check_new(ids, n);
    } else {
        map_.next_ids(assigned, n);  // only reserves numbers: nothing is bound yet
        ids = assigned;
    }
    const std::size_t start = map_.slots();
    if (rerank_) {  // first: the one step that can fail (full disk, read-only file)
        std::vector<std::int64_t> slots(n);
        for (std::size_t i = 0; i < n; ++i) slots[i] = static_cast<std::int64_t>(start + i);
        put_rows_of_add(*rerank_, map_, next_before, slots.data(), x, n);
    }
    const std::size_t need = code_bytes_for(start + n);
    if (codes_.capacity() < need) codes_.reserve(std::max(need, codes_.capacity() * 3 / 2));
    codes_.resize(need, 0);
    alive_.reserve(start + n);
    if (nbits_ == 8) {
        std::memcpy(codes_.data() + start * m, codes, n * m);
    } else {
        const std::size_t block_bytes = fastscan_m4(m) * 16;
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t row = start + i;
            write_block_row(codes_.data() + row / 32 * block_bytes, row % 32, codes + i * m, m);
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        map_.bind(map_.append_slot(), ids[i]);
        alive_.push_back(1);
    }
}

std::size_t PqCore::remove(const std::int64_t* ids, std::size_t n) { return tombstone_ids(map_, alive_, ids, n); }

// Tables and code scan of nq queries: candidates (nq, c) slots and ADC / fast-scan distances.
void PqCore::scan(const float* q, std::size_t nq, std::size_t c, const std::uint8_t* mask, std::size_t threads,
                  float* cand_d, std::int64_t* cand) const {
    const std::size_t n = map_.slots(), m = books_.m(), ksub = books_.ksub(), dim = books_.dim();
    std::vector<float> rotated;
    const float* qr = books_.rotate(*table_, q, nq, threads, rotated);
    std::vector<float> luts(std::min(nq, kQueryBatch) * m * ksub);
    const PqBooks pb = books_.view();
    for (std::size_t start = 0; start < nq; start += kQueryBatch) {
        const std::size_t count = std::min(kQueryBatch, nq - start);
        pq_tables(pb, qr + start * dim, count, l2_, threads, luts.data());
        PqSearchOutput out{cand_d + start * c, cand + start * c};
        if (nbits_ == 8)
            pq_search_u8(*table_, codes_.data(), n, m, luts.data(), count, c, mask, threads, out);
        else
            pq_search_u4(*table_, codes_.data(), n, m, luts.data(), count, c, mask, threads, out);
    }
}

void PqCore::search(const PqQuery& q, const IdFilter& filter, std::size_t threads, float* out_distances,
                    std::int64_t* out_ids) const {
    const std::size_t nq = q.nq, k = q.k, dim = books_.dim();
    if (map_.size() == 0 || !books_.trained()) {
        std::fill(out_distances, out_distances + nq * k, std::numeric_limits<float>::infinity());
        std::fill(out_ids, out_ids + nq * k, -1);
        return;
    }
    const std::size_t c = rerank_ ? std::max(q.candidates, k) : k, n = map_.slots();
    std::vector<float> cand_d(nq * c);
    std::vector<std::int64_t> cand(nq * c);
    if (!filter.active()) {
        scan(q.queries, nq, c, map_.size() == n ? nullptr : alive_.data(), threads, cand_d.data(), cand.data());
    } else {
        SlotMaskPool::Lease mask = masks_.lease();
        if (filter.id_mask) {
            SlotFilter by_id{nullptr, map_.ids(), filter.id_mask, filter.id_mask_len};
            mask->allow.resize(std::max(mask->allow.size(), n));
            for (std::size_t s = 0; s < n; ++s) mask->allow[s] = by_id.allows(static_cast<std::uint32_t>(s));
            scan(q.queries, nq, c, mask->allow.data(), threads, cand_d.data(), cand.data());
            std::fill(mask->allow.begin(), mask->allow.begin() + static_cast<std::ptrdiff_t>(n), 0);
        } else if (filter.lists == 1) {
            mask->build(map_, filter, 0);
            scan(q.queries, nq, c, mask->allow.data(), threads, cand_d.data(), cand.data());
        } else {
            for (std::size_t i = 0; i < nq; ++i) {
                mask->build(map_, filter, i);
                scan(q.queries + i * dim, 1, c, mask->allow.data(), threads, cand_d.data() + i * c,
                     cand.data() + i * c);
            }
        }
    }
    keep_candidates(rerank_.get(), q.queries, nq, cand_d.data(), cand.data(), c, k, threads, out_distances, out_ids);
    for (std::size_t i = 0; i < nq * k; ++i)
        if (out_ids[i] >= 0) out_ids[i] = map_.id(static_cast<std::size_t>(out_ids[i]));
}

void PqCore::search1(const float* query, std::size_t k, std::size_t candidates, std::size_t threads, Scratch& s,
                     float* out_distances, std::int64_t* out_ids) const {
    const std::size_t n = map_.slots(), m = books_.m(), ksub = books_.ksub(), dim = books_.dim();
    if (map_.size() == 0 || !books_.trained()) {
        std::fill(out_distances, out_distances + k, std::numeric_limits<float>::infinity());
        std::fill(out_ids, out_ids + k, -1);
        return;
    }
    const std::size_t c = rerank_ ? std::max(candidates, k) : k;
    if (threads == 0) threads = code_bytes_for(n) >= kLeanParallelBytes ? available_cores() : 1;
    const float* qr = query;
    if (books_.rotation_t()) {
        s.rotated.resize(dim);
        inner_products(*table_, books_.rotation_t(), dim, query, 1, dim, 1, s.rotated.data());
        qr = s.rotated.data();
    }
    s.luts.resize(m * ksub);
    s.cand_d.resize(c);
    s.cand.resize(c);
    pq_tables(books_.view(), qr, 1, l2_, 1, s.luts.data());
    const std::uint8_t* mask = map_.size() == n ? nullptr : alive_.data();
    PqSearchOutput out{s.cand_d.data(), s.cand.data()};
    if (nbits_ == 8)
        pq_search_u8(*table_, codes_.data(), n, m, s.luts.data(), 1, c, mask, threads, out);
    else
        pq_search_u4(*table_, codes_.data(), n, m, s.luts.data(), 1, c, mask, threads, out);
    keep_candidates(rerank_.get(), query, 1, s.cand_d.data(), s.cand.data(), c, k, threads, out_distances, out_ids);
    for (std::size_t i = 0; i < k; ++i)
        if (out_ids[i] >= 0) out_ids[i] = map_.id(static_cast<std::size_t>(out_ids[i]));
}

void PqCore::restore(const std::uint8_t* codes, const std::int64_t* ids, std::size_t slots, std::int64_t next_id) {
    if (map_.slots() != 0) throw std::invalid_argument("restore: the index is not empty");
    IdMap map = restored_ids("PQ", books_.trained(), rerank_.get(), ids, slots, next_id);
    codes_.assign(codes, codes + code_bytes_for(slots));
    alive_from_ids(ids, slots, alive_);
    map_ = std::move(map);
}

// ---- IvfPqCore ---------------------------------------------------------------------------
IvfPqCore::IvfPqCore(const KernelTable& table, std::size_t dim, std::size_t nlist, std::size_t m, int nbits,
                     Metric metric, std::shared_ptr<RerankRows> rerank)
    : table_(&table), books_(dim, m, nbits), nlist_(nlist), l2_(metric == Metric::l2), store_(nbits, m, nlist),
      rerank_(std::move(rerank)) {
    if (metric == Metric::hamming) throw std::invalid_argument("IVF-PQ metrics are l2, ip, cosine");
    if (nlist == 0) throw std::invalid_argument("nlist must be >= 1");
    if (rerank_ && rerank_->spec().dim != dim) throw std::invalid_argument("re-rank rows of another dimension");
}

void IvfPqCore::set_trained(const float* centroids, const float* books, const float* list_tables) {
    if (map_.size() != 0)
        throw std::invalid_argument("the index already holds vectors encoded with its current training");
    if (l2_ && !list_tables) throw std::invalid_argument("an l2 IVF-PQ index needs its list tables");
    const std::size_t dim = books_.dim();
    centroids_.assign(centroids, centroids + nlist_ * dim);
    if (list_tables)
        list_tables_.assign(list_tables, list_tables + nlist_ * books_.m() * books_.ksub());
    else
        list_tables_.clear();
    books_.set(books, nullptr);
}

void IvfPqCore::encode(const float* x, std::size_t n, std::size_t threads, std::int64_t* lists,
                       std::uint8_t* codes) const {
    if (!books_.trained()) throw std::invalid_argument("the index is not trained");
    const std::size_t dim = books_.dim();
    std::vector<float> dist(n);
    if (l2_) {
        nearest_centroids(*table_, x, n, dim, centroids_.data(), nlist_, threads, lists, dist.data());
    } else {  // ip / cosine: the list of largest inner product (exact search, k = 1)
        StoreSpec coarse;
        coarse.storage = Storage::f32;
        coarse.metric = Metric::ip;
        coarse.dim = dim;
        coarse.row_bytes = dim * 4;
        exact_search(*table_, coarse, reinterpret_cast<const std::uint8_t*>(centroids_.data()), nlist_, x, n, 1,
                     nullptr, threads, dist.data(), lists);
    }
    std::vector<float> residuals(n * dim);
    for (std::size_t i = 0; i < n; ++i) {
        const float* c = centroids_.data() + static_cast<std::size_t>(lists[i]) * dim;
        for (std::size_t j = 0; j < dim; ++j) residuals[i * dim + j] = x[i * dim + j] - c[j];
    }
    books_.encode_rotated(*table_, residuals.data(), n, threads, codes);
}

void IvfPqCore::add(const float* x, const std::int64_t* lists, const std::uint8_t* codes, const std::int64_t* ids,
                    std::int64_t* assigned, std::size_t n) {
    if (!books_.trained()) throw std::invalid_argument("the index is not trained");
    for (std::size_t i = 0; i < n; ++i)
        if (lists[i] < 0 || static_cast<std::size_t>(lists[i]) >= nlist_)
            throw std::invalid_argument("list " + std::to_string(lists[i]) + " out of range");
    if (books_.ksub() == 16)
        for (std::size_t i = 0; i < n * books_.m(); ++i)
            if (codes[i] > 15) throw std::invalid_argument("4-bit codes must be < 16");
    const std::int64_t next_before = map_.next_id();
    if (ids) {
        map_.check_new(ids, n);
    } else {
        map_.next_ids(assigned, n);
        ids = assigned;
    }
    const std::size_t start = map_.slots();
    std::vector<std::int64_t> slots(n);
    for (std::size_t i = 0; i < n; ++i) slots[i] = static_cast<std::int64_t>(start + i);
    if (rerank_) put_rows_of_add(*rerank_, map_, next_before, slots.data(), x, n);  // first: the one step that can fail
    store_.append(lists, codes, slots.data(), n);
    alive_.reserve(start + n);
    for (std::size_t i = 0; i < n; ++i) {
        map_.bind(map_.append_slot(), ids[i]);
        alive_.push_back(1);
    }
}

std::size_t IvfPqCore::remove(const std::int64_t* ids, std::size_t n) { return tombstone_ids(map_, alive_, ids, n); }

// Coarse probes, residual tables and list scans of nq queries: candidates (nq, c).
void IvfPqCore::scan(const float* q, std::size_t nq, std::size_t nprobe, std::size_t c, const std::uint8_t* mask,
                     std::size_t threads, float* cand_d, std::int64_t* cand) const {
    const std::size_t dim = books_.dim(), m = books_.m(), ksub = books_.ksub();
    StoreSpec coarse;
    coarse.storage = Storage::f32;
    coarse.metric = l2_ ? Metric::l2 : Metric::ip;
    coarse.dim = dim;
    coarse.row_bytes = dim * 4;
    std::vector<float> bias(nq * nprobe);
    std::vector<std::int64_t> probes(nq * nprobe);
    exact_search(*table_, coarse, reinterpret_cast<const std::uint8_t*>(centroids_.data()), nlist_, q, nq, nprobe,
                 nullptr, threads, bias.data(), probes.data());
    IvfLists lists = store_.view();
    if (!list_tables_.empty()) lists.list_tables = list_tables_.data();
    const PqBooks pb = books_.view();
    std::vector<float> luts(std::min(nq, kQueryBatch) * m * ksub);
    for (std::size_t start = 0; start < nq; start += kQueryBatch) {
        const std::size_t count = std::min(kQueryBatch, nq - start);
        // -<q_j, C_jc> (the +1 of sub-space 0 taken back); l2: -2 <q_j, C_jc>, the list
        // tables add the rest
        pq_tables(pb, q + start * dim, count, false, threads, luts.data());
        for (std::size_t i = 0; i < count; ++i) {
            float* first = luts.data() + i * m * ksub;
            for (std::size_t cc = 0; cc < ksub; ++cc) first[cc] -= 1.0f;
        }
        if (l2_)
            for (float& v : luts) v *= 2.0f;
        ivf_search(*table_, lists, luts.data(), probes.data() + start * nprobe, bias.data() + start * nprobe, count,
                   nprobe, c, mask, map_.slots(), threads, PqSearchOutput{cand_d + start * c, cand + start * c});
    }
}

void IvfPqCore::search(const PqQuery& q, std::size_t nprobe, const IdFilter& filter, std::size_t threads,
                       float* out_distances, std::int64_t* out_ids) const {
    const std::size_t nq = q.nq, k = q.k, dim = books_.dim();
    if (nprobe < 1 || nprobe > nlist_) throw std::invalid_argument("nprobe must be in [1, nlist]");
    if (map_.size() == 0 || !books_.trained()) {
        std::fill(out_distances, out_distances + nq * k, std::numeric_limits<float>::infinity());
        std::fill(out_ids, out_ids + nq * k, -1);
        return;
    }
    const std::size_t c = rerank_ ? std::max(q.candidates, k) : k, n = map_.slots();
    std::vector<float> cand_d(nq * c);
    std::vector<std::int64_t> cand(nq * c);
    if (!filter.active()) {
        scan(q.queries, nq, nprobe, c, map_.size() == n ? nullptr : alive_.data(), threads, cand_d.data(),
             cand.data());
    } else {
        SlotMaskPool::Lease mask = masks_.lease();
        if (filter.id_mask) {
            SlotFilter by_id{nullptr, map_.ids(), filter.id_mask, filter.id_mask_len};
            mask->allow.resize(std::max(mask->allow.size(), n));
            for (std::size_t s = 0; s < n; ++s) mask->allow[s] = by_id.allows(static_cast<std::uint32_t>(s));
            scan(q.queries, nq, nprobe, c, mask->allow.data(), threads, cand_d.data(), cand.data());
            std::fill(mask->allow.begin(), mask->allow.begin() + static_cast<std::ptrdiff_t>(n), 0);
        } else if (filter.lists == 1) {
            mask->build(map_, filter, 0);
            scan(q.queries, nq, nprobe, c, mask->allow.data(), threads, cand_d.data(), cand.data());
        } else {
            for (std::size_t i = 0; i < nq; ++i) {
                mask->build(map_, filter, i);
                scan(q.queries + i * dim, 1, nprobe, c, mask->allow.data(), threads, cand_d.data() + i * c,
                     cand.data() + i * c);
            }
        }
    }
    keep_candidates(rerank_.get(), q.queries, nq, cand_d.data(), cand.data(), c, k, threads, out_distances, out_ids);
    for (std::size_t i = 0; i < nq * k; ++i)
        if (out_ids[i] >= 0) out_ids[i] = map_.id(static_cast<std::size_t>(out_ids[i]));
}

void IvfPqCore::restore(const std::uint8_t* codes, const std::int64_t* entry_slots, const std::int64_t* offsets,
                        const std::int64_t* ids, std::size_t slots, std::int64_t next_id) {
    if (map_.slots() != 0) throw std::invalid_argument("restore: the index is not empty");
    IdMap map = restored_ids("IVF-PQ", books_.trained(), rerank_.get(), ids, slots, next_id);
    store_.restore(codes, entry_slots, offsets, slots);  // checks every entry slot
    alive_from_ids(ids, slots, alive_);
    map_ = std::move(map);
}

std::size_t IvfPqCore::nbytes() const {
    return store_.nbytes() + alive_.capacity() + map_.nbytes() + books_.nbytes() +
           (centroids_.size() + list_tables_.size()) * 4 + (rerank_ ? rerank_->nbytes() : 0);
}

std::size_t PqCore::nbytes() const {
    return codes_.capacity() + alive_.capacity() + map_.nbytes() + books_.nbytes() + (rerank_ ? rerank_->nbytes() : 0);
}

}  // namespace simdex
