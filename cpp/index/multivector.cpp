// Exact Chamfer scoring and MUVERA encodings; see multivector.hpp.
#include "index/multivector.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>

#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {

void check_offsets(const std::int64_t* offsets, std::size_t n, std::size_t total, bool require_nonempty,
                   const char* what) {
    if (offsets[0] != 0 || static_cast<std::uint64_t>(offsets[n]) != total)
        throw std::invalid_argument(std::string(what) + ": offsets must run from 0 to the " + std::to_string(total) +
                                    " token rows; got " + std::to_string(offsets[0]) + " .. " +
                                    std::to_string(offsets[n]));
    for (std::size_t i = 0; i < n; ++i) {
        if (offsets[i + 1] < offsets[i])
            throw std::invalid_argument(std::string(what) + ": offsets must be ascending; offsets[" +
                                        std::to_string(i + 1) + "] < offsets[" + std::to_string(i) + "]");
        if (require_nonempty && offsets[i + 1] == offsets[i])
            throw std::invalid_argument(std::string(what) + ": set " + std::to_string(i) + " has no tokens");
    }
}

// ---- MaxSim -------------------------------------------------------------------------------

QueryPanel::QueryPanel(const KernelTable& kernels, const float* tokens, std::size_t tq, const TokenSpec& docs)
    : maxsim_(&kernels.maxsim), dot_rows_(kernels.dot_f32_rows), tq_(tq), dim_(docs.dim) {
    const std::size_t lanes = kernels.maxsim.lanes;
    by_rows_ = 4 * tq <= lanes;
    blocks_ = (tq + lanes - 1) / lanes;
    panel_.assign(by_rows_ ? tq * dim_ : blocks_ * dim_ * lanes, 0.0f);
    const bool ranged = docs.type == TokenType::u8;
    if (ranged) constant_.assign(tq, 0.0);
    for (std::size_t i = 0; i < tq; ++i) {
        const float* q = tokens + i * dim_;
        // panel column of token i (stride lanes), or its own row (stride 1)
        float* out = by_rows_ ? panel_.data() + i * dim_ : panel_.data() + (i / lanes) * dim_ * lanes + i % lanes;
        const std::size_t stride = by_rows_ ? 1 : lanes;
        for (std::size_t j = 0; j < dim_; ++j) out[j * stride] = ranged ? q[j] * docs.scale[j] : q[j];
        if (ranged) {
            double c = 0.0;
            for (std::size_t j = 0; j < dim_; ++j) c += static_cast<double>(q[j]) * docs.lo[j];
            constant_[i] = c;
        }
    }
}

float QueryPanel::score_rows(const float* rows, std::size_t n_p, std::vector<float>& scratch) const {
    double total = 0.0;
    if (by_rows_) {
        if (scratch.size() < n_p) scratch.resize(n_p);
        for (std::size_t i = 0; i < tq_; ++i) {
            dot_rows_(panel_.data() + i * dim_, rows, n_p, dim_, scratch.data());
            float best = scratch[0];
            for (std::size_t r = 1; r < n_p; ++r) best = scratch[r] > best ? scratch[r] : best;
            total += best + (constant_.empty() ? 0.0 : constant_[i]);
        }
        return static_cast<float>(total);
    }
    scratch.assign(blocks_ * maxsim_->lanes, -std::numeric_limits<float>::infinity());
    maxsim_->maxsim_f32(panel_.data(), blocks_, rows, n_p, dim_, scratch.data());
    for (std::size_t i = 0; i < tq_; ++i) total += scratch[i] + (constant_.empty() ? 0.0 : constant_[i]);
    return static_cast<float>(total);
}

const float* widen_rows(const MaxSimKernels& kernels, const std::uint8_t* doc, std::size_t n_p,
                        const TokenSpec& spec, std::vector<float>& out) {
    if (spec.type == TokenType::f32) return reinterpret_cast<const float*>(doc);
    const std::size_t count = n_p * spec.dim;
    if (out.size() < count) out.resize(count);
    if (spec.type == TokenType::f16)
        kernels.widen_f16(reinterpret_cast<const std::uint16_t*>(doc), count, out.data());
    else
        kernels.widen_u8(doc, count, out.data());
    return out.data();
}

namespace {

std::vector<QueryPanel> make_panels(const KernelTable& kernels, const TokenSets& queries, const TokenSpec& docs) {
    std::vector<QueryPanel> panels;
    panels.reserve(queries.n);
    const float* tokens = reinterpret_cast<const float*>(queries.data);
    for (std::size_t i = 0; i < queries.n; ++i)
        panels.emplace_back(kernels, tokens + static_cast<std::size_t>(queries.offsets[i]) * docs.dim,
                            static_cast<std::size_t>(queries.offsets[i + 1] - queries.offsets[i]), docs);
    return panels;
}

struct Scratch {
    std::vector<float> widened, best;
};

}  // namespace

void chamfer_all(const KernelTable& kernels, const TokenSets& queries, const TokenSets& docs, std::size_t threads,
                 float* out) {
    const MaxSimKernels& ms = kernels.maxsim;
    const std::vector<QueryPanel> panels = make_panels(kernels, queries, docs.spec);
    // Tasks: blocks of consecutive documents, widened once (one call: their rows are
    // contiguous), then every query's panel against each of them: a panel stays in L1 while
    // it meets the block's documents, and the block stays in L2 across queries.
    const std::size_t per_task = 32;
    const std::size_t tasks = (docs.n + per_task - 1) / per_task;
    std::vector<Scratch> scratch(std::max<std::size_t>(1, std::min(threads, tasks)));
    const std::size_t row_bytes = docs.spec.row_bytes();
    parallel_for(tasks, threads, [&](std::size_t task, std::size_t worker) {
        Scratch& s = scratch[worker];
        const std::size_t first = task * per_task, last = std::min(docs.n, first + per_task);
        const std::size_t base = static_cast<std::size_t>(docs.offsets[first]);
        const float* rows = widen_rows(ms, docs.data + base * row_bytes,
                                       static_cast<std::size_t>(docs.offsets[last]) - base, docs.spec, s.widened);
        for (std::size_t q = 0; q < queries.n; ++q)
            for (std::size_t p = first; p < last; ++p) {
                const std::size_t start = static_cast<std::size_t>(docs.offsets[p]);
                const std::size_t n_p = static_cast<std::size_t>(docs.offsets[p + 1]) - start;
                out[q * docs.n + p] = panels[q].score_rows(rows + (start - base) * docs.spec.dim, n_p, s.best);
            }
    });
}

void chamfer_rerank(const KernelTable& kernels, const TokenSets& queries, const TokenSets& store,
                    const std::int64_t* candidates, std::size_t c, std::size_t k, std::size_t threads,
                    float* out_distances, std::int64_t* out_slots) {
    if (queries.n * c >= (std::size_t{1} << 32) || store.n >= (std::size_t{1} << 31))
        throw std::invalid_argument("chamfer re-rank: at most 2^32 (query, candidate) pairs per call");
    for (std::size_t i = 0; i < queries.n * c; ++i)
        if (candidates[i] < -1 || candidates[i] >= static_cast<std::int64_t>(store.n))
            throw std::invalid_argument("candidate slot " + std::to_string(candidates[i]) +
                                        " is outside the token store of " + std::to_string(store.n) + " sets");
    const MaxSimKernels& ms = kernels.maxsim;
    const std::vector<QueryPanel> panels = make_panels(kernels, queries, store.spec);
    // Every (candidate, query) pair sorted by slot: a document proposed to several queries of
    // the batch is read and widened once and scored against each of their panels, and the
    // store is walked in address order. Pairs are scored in parallel blocks (one query with
    // many candidates uses every thread too), then one top-k per query.
    std::vector<std::uint64_t> pairs;  // slot << 32 | index into candidates (both < 2^32)
    pairs.reserve(queries.n * c);
    for (std::size_t i = 0; i < queries.n * c; ++i)
        if (candidates[i] >= 0) pairs.push_back(static_cast<std::uint64_t>(candidates[i]) << 32 | i);
    std::sort(pairs.begin(), pairs.end());
    const std::size_t per_task = 32;
    const std::size_t tasks = (pairs.size() + per_task - 1) / per_task;
    std::vector<float> scores(queries.n * c, std::numeric_limits<float>::infinity());
    std::vector<Scratch> scratch(std::max<std::size_t>(1, std::min(threads, tasks)));
    const std::size_t row_bytes = store.spec.row_bytes();
    parallel_for(tasks, threads, [&](std::size_t task, std::size_t worker) {
        Scratch& s = scratch[worker];
        const std::size_t end = std::min(pairs.size(), (task + 1) * per_task);
        std::int64_t widened_slot = -1;
        const float* rows = nullptr;
        std::size_t n_p = 0;
        for (std::size_t p = task * per_task; p < end; ++p) {
            const std::int64_t slot = static_cast<std::int64_t>(pairs[p] >> 32);
            const std::size_t index = static_cast<std::size_t>(pairs[p] & 0xffffffffu);
            if (slot != widened_slot) {
                const std::size_t start = static_cast<std::size_t>(store.offsets[slot]);
                n_p = static_cast<std::size_t>(store.offsets[slot + 1]) - start;
                rows = widen_rows(ms, store.data + start * row_bytes, n_p, store.spec, s.widened);
                widened_slot = slot;
                // fetch the next document's rows while this one is scored
                const std::size_t next = p + 1 < end ? static_cast<std::size_t>(pairs[p + 1] >> 32) : 0;
                if (p + 1 < end && static_cast<std::int64_t>(next) != slot) {
                    const std::uint8_t* ahead = store.data + static_cast<std::size_t>(store.offsets[next]) * row_bytes;
                    const std::size_t bytes = static_cast<std::size_t>(store.offsets[next + 1] - store.offsets[next]) * row_bytes;
                    for (std::size_t b = 0; b < bytes; b += 64) __builtin_prefetch(ahead + b);
                }
            }
            if (n_p == 0) continue;  // a removed slot's tokens may have been dropped
            scores[index] = -panels[index / c].score_rows(rows, n_p, s.best);
        }
    });
    for (std::size_t q = 0; q < queries.n; ++q) {
        TopK top(k);
        for (std::size_t j = 0; j < c; ++j) {
            const std::int64_t slot = candidates[q * c + j];
            if (slot >= 0) top.push(scores[q * c + j], slot);
        }
        top.write_sorted(out_distances + q * k, out_slots + q * k);
    }
}

// ---- MUVERA encodings -----------------------------------------------------------------------

namespace {

struct FdeScratch {
    std::vector<float> hashed, rows, projected, raw;
    std::vector<std::uint32_t> codes, counts;
    std::vector<std::int32_t> slot, token_row;
};

int popcount32(std::uint32_t v) {
    int count = 0;
    for (; v; v &= v - 1) ++count;
    return count;
}

}  // namespace

void split_fde_matrix(const FdeParams& p, const float* matrix, std::vector<float>& hash, std::vector<float>& proj) {
    const std::size_t per_rep = p.k_sim + p.d_proj, cols = p.r_reps * per_rep, hash_cols = p.hash_cols();
    hash.assign(p.dim * hash_cols, 0.0f);
    proj.assign(p.r_reps * p.dim * p.d_proj, 0.0f);
    for (std::size_t j = 0; j < p.dim; ++j)
        for (std::size_t r = 0; r < p.r_reps; ++r) {
            const float* w = matrix + j * cols + r * per_rep;
            std::copy(w, w + p.k_sim, hash.data() + j * hash_cols + r * p.k_sim);
            std::copy(w + p.k_sim, w + per_rep, proj.data() + (r * p.dim + j) * p.d_proj);
        }
}

void fde_encode(const KernelTable& kernels, const FdeDraws& draws, const TokenSets& tokens, std::size_t threads,
                float* out) {
    const MaxSimKernels& ms = kernels.maxsim;
    const FdeParams& p = draws.params;
    const std::size_t buckets = std::size_t{1} << p.k_sim;
    const std::size_t hash_cols = p.hash_cols(), dim = p.dim, d_proj = p.d_proj;
    const std::size_t raw_dim = p.raw_dim(), out_dim = p.out_dim();
    const float rep_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.r_reps)));
    const bool fill = p.documents && p.fill_empty;
    const float* x = reinterpret_cast<const float*>(tokens.data);
    const std::size_t per_task = 4;
    const std::size_t tasks = (tokens.n + per_task - 1) / per_task;
    std::vector<FdeScratch> scratch(std::max<std::size_t>(1, std::min(threads, tasks)));
    parallel_for(tasks, threads, [&](std::size_t task, std::size_t worker) {
        FdeScratch& s = scratch[worker];
        for (std::size_t i = task * per_task; i < std::min(tokens.n, (task + 1) * per_task); ++i) {
            const std::size_t start = static_cast<std::size_t>(tokens.offsets[i]);
            const std::size_t n = static_cast<std::size_t>(tokens.offsets[i + 1]) - start;
            const float* xs = x + start * dim;
            // rows of one repetition: the bucket sums (<= n), then with fill_empty the distinct
            // tokens that fill empty buckets (<= n)
            s.hashed.resize(n * hash_cols);
            s.rows.resize(2 * n * dim);
            s.projected.resize(2 * n * d_proj);
            s.codes.resize(n);
            s.token_row.resize(n);
            ms.project_f32(xs, n, dim, draws.hash, hash_cols, s.hashed.data());
            float* row = p.final_dim ? (s.raw.resize(raw_dim), s.raw.data()) : out + i * out_dim;
            for (std::size_t r = 0; r < p.r_reps; ++r) {
                s.slot.assign(buckets, -1);
                s.counts.assign(buckets, 0u);
                std::size_t rows = 0;
                for (std::size_t t = 0; t < n; ++t) {  // SimHash; sums of the raw tokens in token order
                    const float* ht = s.hashed.data() + t * hash_cols + r * p.k_sim;
                    std::uint32_t code = 0;
                    for (std::size_t b = 0; b < p.k_sim; ++b) code |= static_cast<std::uint32_t>(ht[b] > 0.0f) << b;
                    s.codes[t] = code;
                    ++s.counts[code];
                    const float* xt = xs + t * dim;
                    if (s.slot[code] < 0) {
                        s.slot[code] = static_cast<std::int32_t>(rows++);
                        std::copy(xt, xt + dim, s.rows.data() + (rows - 1) * dim);
                    } else {
                        float* dst = s.rows.data() + static_cast<std::size_t>(s.slot[code]) * dim;
                        for (std::size_t j = 0; j < dim; ++j) dst[j] += xt[j];
                    }
                }
                if (fill && n) {  // an empty bucket takes the first token with the fewest differing bits
                    std::fill(s.token_row.begin(), s.token_row.end(), -1);
                    for (std::size_t bucket = 0; bucket < buckets; ++bucket) {
                        if (s.counts[bucket]) continue;
                        std::size_t nearest = 0;
                        int fewest = 1 << 30;
                        for (std::size_t t = 0; t < n; ++t) {
                            const int bits = popcount32(s.codes[t] ^ static_cast<std::uint32_t>(bucket));
                            if (bits < fewest) fewest = bits, nearest = t;
                        }
                        if (s.token_row[nearest] < 0) {
                            s.token_row[nearest] = static_cast<std::int32_t>(rows++);
                            std::copy(xs + nearest * dim, xs + (nearest + 1) * dim, s.rows.data() + (rows - 1) * dim);
                        }
                        s.slot[bucket] = s.token_row[nearest];
                    }
                }
                if (rows) ms.project_f32(s.rows.data(), rows, dim, draws.proj + r * dim * d_proj, d_proj,
                                         s.projected.data());
                float* block = row + r * buckets * d_proj;  // (buckets, d_proj)
                for (std::size_t bucket = 0; bucket < buckets; ++bucket) {
                    float* dst = block + bucket * d_proj;
                    if (s.slot[bucket] < 0) {
                        std::fill(dst, dst + d_proj, 0.0f);
                        continue;
                    }
                    const float* src = s.projected.data() + static_cast<std::size_t>(s.slot[bucket]) * d_proj;
                    const float scale =
                        (p.documents && s.counts[bucket] ? 1.0f / static_cast<float>(s.counts[bucket]) : 1.0f) *
                        rep_scale;
                    for (std::size_t v = 0; v < d_proj; ++v) dst[v] = src[v] * scale;
                }
            }
            if (p.final_dim) {
                float* dst = out + i * out_dim;
                std::fill(dst, dst + out_dim, 0.0f);
                for (std::size_t c = 0; c < raw_dim; ++c) dst[draws.final_index[c]] += draws.final_sign[c] * row[c];
            }
        }
    });
}

// ---- the search pipeline ---------------------------------------------------------------------

void carve_sets(const TokenSets& queries, double tau, std::vector<float>& out_tokens,
                std::vector<std::int64_t>& out_offsets) {
    const std::size_t dim = queries.spec.dim;
    const float* tokens = reinterpret_cast<const float*>(queries.data);
    out_tokens.clear();
    out_offsets.assign(1, 0);
    std::vector<char> taken;
    std::vector<float> sum(dim);
    for (std::size_t i = 0; i < queries.n; ++i) {
        const std::size_t start = static_cast<std::size_t>(queries.offsets[i]);
        const std::size_t tq = static_cast<std::size_t>(queries.offsets[i + 1]) - start;
        const float* q = tokens + start * dim;
        taken.assign(tq, 0);
        std::int64_t clusters = 0;
        for (std::size_t centre = 0; centre < tq; ++centre) {
            if (taken[centre]) continue;
            std::fill(sum.begin(), sum.end(), 0.0f);
            const float* c = q + centre * dim;
            for (std::size_t t = centre; t < tq; ++t) {
                if (taken[t]) continue;
                const float* x = q + t * dim;
                double dot = 0.0;
                for (std::size_t j = 0; j < dim; ++j) dot += static_cast<double>(c[j]) * x[j];
                if (t != centre && !(dot >= tau)) continue;
                taken[t] = 1;
                for (std::size_t j = 0; j < dim; ++j) sum[j] += x[j];
            }
            out_tokens.insert(out_tokens.end(), sum.begin(), sum.end());
            ++clusters;
        }
        out_offsets.push_back(out_offsets.back() + clusters);
    }
}

void chamfer_rerank_store(const KernelTable& kernels, const TokenSets& queries, const TokenStoreView& store,
                          const std::int64_t* candidates, std::size_t c, std::size_t k, std::size_t threads,
                          float* out_distances, std::int64_t* out_slots) {
    std::shared_lock<RwLock> lock(store.rows->lock());
    const StoreSpec& spec = store.rows->spec();
    TokenSets tokens;
    tokens.data = store.rows->data();
    tokens.offsets = store.offsets;
    tokens.n = store.sets;
    tokens.spec.type = spec.storage == Storage::f32 ? TokenType::f32
                       : spec.storage == Storage::f16 ? TokenType::f16 : TokenType::u8;
    if (spec.storage != Storage::f32 && spec.storage != Storage::f16 && spec.storage != Storage::u8)
        throw std::invalid_argument("token store: rows must be float32, float16 or int8");
    tokens.spec.dim = spec.dim;
    tokens.spec.lo = spec.lo;
    tokens.spec.scale = spec.scale;
    if (spec.dim != queries.spec.dim)
        throw std::invalid_argument("token store: its dimension does not match the queries");
    check_offsets(store.offsets, store.sets, store.rows->count(), false, "token store");
    chamfer_rerank(kernels, queries, tokens, candidates, c, k, threads, out_distances, out_slots);
}

void multivector_search(const KernelTable& kernels, const FdeDraws& encoder, const TokenSets& queries,
                        const TokenStoreView& store, std::size_t c, std::size_t k, double carve_tau,
                        std::size_t threads, const CandidateStage& stage, float* out_distances,
                        std::int64_t* out_slots) {
    FdeParams p = encoder.params;
    p.documents = p.fill_empty = false;
    const std::size_t nq = queries.n;
    std::vector<float> fde(nq * p.out_dim()), cand_d(nq * c);
    std::vector<std::int64_t> cand(nq * c, -1);
    FdeDraws draws = encoder;
    draws.params = p;
    fde_encode(kernels, draws, queries, threads, fde.data());
    stage(fde.data(), nq, c, cand_d.data(), cand.data());
    TokenSets scored = queries;
    std::vector<float> carved;
    std::vector<std::int64_t> carved_offsets;
    if (!std::isnan(carve_tau)) {
        carve_sets(queries, carve_tau, carved, carved_offsets);
        scored.data = reinterpret_cast<const std::uint8_t*>(carved.data());
        scored.offsets = carved_offsets.data();
    }
    chamfer_rerank_store(kernels, scored, store, cand.data(), c, k, threads, out_distances, out_slots);
}

}  // namespace simdex
