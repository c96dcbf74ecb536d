// PQIndex and IVFPQIndex cores: one object per index owning the trained parameters, the
// codes, the id <-> slot map and the re-rank rows; the kernel table is captured at
// construction. Python trains (k-means, PQ / OPQ fitting) and hands the parameters over
// once (set_trained); every add / remove / search is one call.
//
// Slots are appended, never reused: a removed row keeps its codes (and re-rank row) behind a
// dead slot that scans mask out (alive_), so codes, re-rank rows and slots stay aligned and
// a remove is O(1).
//
// Not thread-safe by themselves: the bindings guard each core with a reader-writer lock
// (searches and encoding share it; add / remove / restore / set_trained take it alone).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "index/idmap.hpp"
#include "index/pq.hpp"
#include "index/rerank.hpp"
#include "index/scorer.hpp"

namespace simdex {

// Trained product quantizer: codebooks (m, ksub, dsub) in the layouts the table builder
// reads, and an optional OPQ rotation R (dim, dim) (x is coded as x R), kept transposed.
class PqCodebooks {
   public:
    PqCodebooks(std::size_t dim, std::size_t m, int nbits);
    // books (m, ksub, dsub) float32; rotation (dim, dim) float32 or nullptr.
    void set(const float* books, const float* rotation);
    bool trained() const { return !books_.empty(); }
    PqBooks view() const;
    const float* rotation_t() const { return rot_t_.empty() ? nullptr : rot_t_.data(); }
    // Rows x (n, dim) -> rotated copy in `buffer` (or x itself without a rotation).
    const float* rotate(const KernelTable& kernels, const float* x, std::size_t n, std::size_t threads,
                        std::vector<float>& buffer) const;
    // Rows x (n, dim), already rotated -> codes (n, m) uint8: nearest centroid per sub-space.
    void encode_rotated(const KernelTable& kernels, const float* xr, std::size_t n, std::size_t threads,
                        std::uint8_t* codes) const;
    std::size_t dim() const { return dim_; }
    std::size_t m() const { return m_; }
    std::size_t ksub() const { return ksub_; }
    std::size_t dsub() const { return dsub_; }
    std::size_t nbytes() const { return (books_.size() * 2 + norms_.size() + rot_t_.size()) * 4; }

   private:
    std::size_t dim_, m_, ksub_, dsub_;
    std::vector<float> books_, books_t_, norms_, rot_t_;
};

// What a PQ / IVF-PQ search hands back per query set: (nq, k) distances, user ids.
struct PqQuery {
    const float* queries;  // (nq, dim) float32 (unit length for cosine)
    std::size_t nq, k, candidates;
};

class PqCore {
   public:
    PqCore(const KernelTable& table, std::size_t dim, std::size_t m, int nbits, Metric metric,
           std::shared_ptr<RerankRows> rerank);

    // Only while no live row is stored.
    void set_trained(const float* books, const float* rotation);
    bool trained() const { return books_.trained(); }
    // x (n, dim) -> codes (n, m) uint8 (rotation included).
    void encode(const float* x, std::size_t n, std::size_t threads, std::uint8_t* codes) const;
    // Append rows: x (n, dim) float32 (stored in the re-rank rows if any), codes (n, m)
    // uint8 as encode() gives; ids (n,) new unique ids, or nullptr = sequential ids written
    // to assigned (n,). Checked before anything changes; a failed re-rank write changes nothing.
    void add(const float* x, const std::uint8_t* codes, const std::int64_t* ids, std::int64_t* assigned,
             std::size_t n);
    std::size_t remove(const std::int64_t* ids, std::size_t n);
    void search(const PqQuery& q, const IdFilter& filter, std::size_t threads, float* out_distances,
                std::int64_t* out_ids) const;
    // One query, no filter, no allocation beyond the scratch buffers given; threads 0: the
    // calling thread alone unless the codes exceed kLeanParallelBytes (then every core).
    struct Scratch {
        std::vector<float> rotated, luts, cand_d;
        std::vector<std::int64_t> cand;
    };
    void search1(const float* query, std::size_t k, std::size_t candidates, std::size_t threads, Scratch& scratch,
                 float* out_distances, std::int64_t* out_ids) const;
    static constexpr std::size_t kLeanParallelBytes = std::size_t(8) << 20;

    // Codes as saved: (n, m) (8 bits) or (ceil(n / 32), m4 / 2, 32) blocks (4 bits).
    std::size_t code_bytes() const { return code_bytes_for(map_.slots()); }
    const std::uint8_t* codes() const { return codes_.data(); }
    // Codes of `slots` slots and one id per slot (-1 = removed); slots are never reused.
    void restore(const std::uint8_t* codes, const std::int64_t* ids, std::size_t slots, std::int64_t next_id);

    const IdMap& idmap() const { return map_; }
    const PqCodebooks& books() const { return books_; }
    const RerankRows* rerank() const { return rerank_.get(); }
    std::size_t nbytes() const;

   private:
    std::size_t code_bytes_for(std::size_t n) const;
    void scan(const float* q, std::size_t nq, std::size_t candidates, const std::uint8_t* mask, std::size_t threads,
              float* cand_d, std::int64_t* cand) const;

    const KernelTable* table_;
    PqCodebooks books_;
    int nbits_;
    bool l2_;
    std::shared_ptr<RerankRows> rerank_;
    std::vector<std::uint8_t> codes_;
    std::vector<std::uint8_t> alive_;  // per slot: 1 = live (the scan mask when nothing is filtered)
    IdMap map_;
    SlotMaskPool masks_;  // for filtered scans
};

// IVFPQIndex core: coarse centroids (nlist, dim) (probed by l2, or by inner product for ip /
// cosine), PQ codebooks of the residuals x - c_l, per-list tables (l2: nlist x m x ksub,
// ||C_jc||^2 + 2 <c_l,j, C_jc>), the inverted lists (IvfStore), the id map and re-rank rows.
class IvfPqCore {
   public:
    IvfPqCore(const KernelTable& table, std::size_t dim, std::size_t nlist, std::size_t m, int nbits, Metric metric,
              std::shared_ptr<RerankRows> rerank);

    // centroids (nlist, dim), books (m, ksub, dsub), list_tables (nlist, m, ksub) (l2 only,
    // else nullptr). Only while no live row is stored.
    void set_trained(const float* centroids, const float* books, const float* list_tables);
    bool trained() const { return books_.trained(); }
    // Rows x (n, dim) -> nearest list (n,) and residual codes (n, m).
    void encode(const float* x, std::size_t n, std::size_t threads, std::int64_t* lists, std::uint8_t* codes) const;
    void add(const float* x, const std::int64_t* lists, const std::uint8_t* codes, const std::int64_t* ids,
             std::int64_t* assigned, std::size_t n);
    std::size_t remove(const std::int64_t* ids, std::size_t n);
    void search(const PqQuery& q, std::size_t nprobe, const IdFilter& filter, std::size_t threads,
                float* out_distances, std::int64_t* out_ids) const;

    // The lists as saved (IvfStore::flatten) and one id per slot.
    const IvfStore& lists() const { return store_; }
    void restore(const std::uint8_t* codes, const std::int64_t* entry_slots, const std::int64_t* offsets,
                 const std::int64_t* ids, std::size_t slots, std::int64_t next_id);

    const IdMap& idmap() const { return map_; }
    const PqCodebooks& books() const { return books_; }
    std::size_t nlist() const { return nlist_; }
    const RerankRows* rerank() const { return rerank_.get(); }
    std::size_t nbytes() const;

   private:
    void scan(const float* q, std::size_t nq, std::size_t nprobe, std::size_t c, const std::uint8_t* mask,
              std::size_t threads, float* cand_d, std::int64_t* cand) const;

    const KernelTable* table_;
    PqCodebooks books_;
    std::size_t nlist_;
    bool l2_;
    std::vector<float> centroids_, list_tables_;
    IvfStore store_;
    std::shared_ptr<RerankRows> rerank_;
    std::vector<std::uint8_t> alive_;
    IdMap map_;
    SlotMaskPool masks_;  // for filtered scans
};

}  // namespace simdex
