// Multi-vector (late-interaction) retrieval: exact Chamfer / MaxSim scoring over token sets
// and MUVERA fixed dimensional encodings (FDE). Baseline ISA only: the SIMD inner loop is
// the 'maxsim' kernel family (kernels/maxsim/maxsim.hpp).
//
// A batch of token sets is CSR:
//     tokens  (T, dim) rows (float32, float16 or uint8 codes of int8 storage)
//     offsets (n + 1,) int64, ascending, offsets[0] = 0, offsets[n] = T;
//     set i = tokens[offsets[i] : offsets[i + 1]]
//
//     Chamfer(Q, P) = sum_{q in Q} max_{p in P} <q, p>
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "index/rerank.hpp"
#include "kernels/kernels.hpp"

namespace simdex {

enum class TokenType { f32, f16, u8 };

// How stored tokens are encoded. u8: x_j = lo_j + scale_j * code_j (per-dimension ranges).
struct TokenSpec {
    TokenType type = TokenType::f32;
    std::size_t dim = 0;
    const float* lo = nullptr;
    const float* scale = nullptr;
    std::size_t row_bytes() const { return dim * (type == TokenType::f32 ? 4 : type == TokenType::f16 ? 2 : 1); }
};

// CSR token sets as the callers hand them over.
struct TokenSets {
    const std::uint8_t* data = nullptr;  // (offsets[n], dim) rows of spec
    const std::int64_t* offsets = nullptr;
    std::size_t n = 0;
    TokenSpec spec;
};

// Throws std::invalid_argument unless offsets are ascending from 0 to `total` and, with
// require_nonempty, every set has at least one token.
void check_offsets(const std::int64_t* offsets, std::size_t n, std::size_t total, bool require_nonempty,
                   const char* what);

// One query set prepared for scoring, with the int8 ranges of the documents it will be scored
// against folded in: <q, lo + scale * c> = <q * scale, c> + <q, lo>. Kernels are captured at
// construction. A set of at least lanes / 4 tokens is packed into a maxsim panel (query tokens
// in SIMD lanes); a smaller one (keyword queries: 1-2 tokens would leave most lanes empty)
// scores each token against the rows with the dense dot_f32_rows kernel and takes the max.
class QueryPanel {
   public:
    QueryPanel(const KernelTable& kernels, const float* tokens, std::size_t tq, const TokenSpec& docs);
    // Chamfer(Q, P) for one document's rows widened to float32 (int8: the codes as values),
    // n_p >= 1; `scratch` is the calling thread's (grown as needed).
    float score_rows(const float* rows, std::size_t n_p, std::vector<float>& scratch) const;

   private:
    const MaxSimKernels* maxsim_;
    void (*dot_rows_)(const float*, const float*, std::size_t, std::size_t, float*);
    bool by_rows_;
    std::vector<float> panel_;      // (blocks, dim, lanes), or (tq, dim) tokens when by_rows_
    std::vector<double> constant_;  // (tq,) <q_i, lo> for int8 documents, else empty
    std::size_t tq_, blocks_, dim_;
};

// Widen n_p stored rows to float32 (int8: code values) into `out` (resized).
const float* widen_rows(const MaxSimKernels& kernels, const std::uint8_t* doc, std::size_t n_p,
                        const TokenSpec& spec, std::vector<float>& out);

// Exact Chamfer scores of every query set against every document set.
// queries: float32 sets (spec.dim must equal docs.spec.dim);  out: (queries.n, docs.n) float32
void chamfer_all(const KernelTable& kernels, const TokenSets& queries, const TokenSets& docs,
                 std::size_t threads, float* out);

// Re-rank: candidates (nq, c) slots of `store` (-1 = none) scored exactly; the k best per
// query written as distances = -Chamfer ascending and slots (-1 / +inf padded).
void chamfer_rerank(const KernelTable& kernels, const TokenSets& queries, const TokenSets& store,
                    const std::int64_t* candidates, std::size_t c, std::size_t k, std::size_t threads,
                    float* out_distances, std::int64_t* out_slots);

// MUVERA fixed dimensional encoding. Per repetition r (of r_reps), with the encoder's matrix
// W (dim, r_reps * (k_sim + d_proj)) whose columns r * (k_sim + d_proj) + [0, k_sim) are the
// SimHash hyperplanes G_r and the next d_proj the inner projection S_r of repetition r:
//   bucket(x) = sum_b [<x, G_r[:, b]> > 0] << b   (b < k_sim) for every token x
//   the tokens of each bucket are summed (queries) or averaged (documents), then projected by
//   S_r (the projection is linear: one projection per non-empty bucket instead of one per
//   token); with fill_empty an empty document bucket takes the projection of the first token
//   whose bucket differs in the fewest bits.
// Output row: (r_reps, 2^k_sim, d_proj) flattened, times 1 / sqrt(r_reps) so that
// <fde(Q), fde(P)> estimates Chamfer(Q, P); with final_dim > 0 a count sketch maps it to
// final_dim values: out[final_index[c]] += final_sign[c] * row[c].
// The projections are the maxsim family's project_f32 (bitwise the same at every level: no
// fused multiply-adds, a fixed order of sums); the rest is baseline code with a fixed order of
// operations: encodings are identical at every SIMD level and thread count.
struct FdeParams {
    std::size_t dim = 0, k_sim = 0, d_proj = 0, r_reps = 0, final_dim = 0;
    bool documents = false, fill_empty = false;
    std::size_t raw_dim() const { return r_reps * (std::size_t{1} << k_sim) * d_proj; }
    std::size_t out_dim() const { return final_dim ? final_dim : raw_dim(); }
    // columns of the hyperplane matrix: r_reps * k_sim rounded up to 16 (whole SIMD tiles)
    std::size_t hash_cols() const { return (r_reps * k_sim + 15) / 16 * 16; }
};

// The random draws of one encoder (MuveraEncoder), rearranged for encoding by
// split_fde_matrix: params (documents / fill_empty are chosen per call), the hyperplanes,
// the inner projections and the final count sketch.
struct FdeDraws {
    FdeParams params;
    const float* hash = nullptr;  // (dim, hash_cols): column r * k_sim + b = G_r[:, b], zero padded
    const float* proj = nullptr;  // (r_reps, dim, d_proj): S_r
    const std::int32_t* final_index = nullptr;  // (raw_dim,) int32 in [0, final_dim) if final_dim
    const float* final_sign = nullptr;          // (raw_dim,) float32 if final_dim
};

// matrix (dim, r_reps * (k_sim + d_proj)) float32 -> hash (dim, hash_cols), proj
// (r_reps, dim, d_proj) as FdeDraws holds them (resized).
void split_fde_matrix(const FdeParams& params, const float* matrix, std::vector<float>& hash,
                      std::vector<float>& proj);

// tokens: float32 sets;  out: (tokens.n, out_dim) float32
void fde_encode(const KernelTable& kernels, const FdeDraws& draws, const TokenSets& tokens, std::size_t threads,
                float* out);

// Ball carving of query sets (MUVERA, section 4): in token order, a token not yet assigned
// opens a cluster that takes every unassigned token x of the set with <x, centre> >= tau
// (products in float64); the cluster is replaced by the float32 sum of its tokens (in token
// order). Fewer query tokens make the re-rank cheaper; the score becomes the sum over
// clusters of max_p <cluster sum, p> (<= the exact Chamfer score).
// queries: float32 sets;  out_tokens (T', dim), out_offsets (n + 1,) (resized)
void carve_sets(const TokenSets& queries, double tau, std::vector<float>& out_tokens,
                std::vector<std::int64_t>& out_offsets);

// The first stage of a multi-vector search: c candidate slots of the token store per query
// for nq encoded queries fde (nq, out_dim) float32, written to cand (nq, c) (-1 padded) with
// their encoding scores in cand_d (nq, c). Supplied by the encoding index (a graph walk or a
// scan) with its own lock held.
using CandidateStage =
    std::function<void(const float* fde, std::size_t nq, std::size_t c, float* cand_d, std::int64_t* cand)>;

// The token store of a multi-vector index: the rows of every set in a RerankRows (set s =
// rows offsets[s] .. offsets[s + 1]), offsets (sets + 1,) int64. Read under the rows' shared
// lock; offsets are re-checked against the rows there.
struct TokenStoreView {
    const RerankRows* rows = nullptr;
    const std::int64_t* offsets = nullptr;
    std::size_t sets = 0;
};

// chamfer_rerank against a token store (under its rows' shared lock).
void chamfer_rerank_store(const KernelTable& kernels, const TokenSets& queries, const TokenStoreView& store,
                          const std::int64_t* candidates, std::size_t c, std::size_t k, std::size_t threads,
                          float* out_distances, std::int64_t* out_slots);

// MultiVectorIndex.search: encode the query sets, take c candidates per query from `stage`,
// optionally carve the query tokens (carve_tau finite or +inf; NaN = no carving), re-rank the
// candidates by exact Chamfer from the token store (chamfer_rerank, under the rows' shared
// lock, taken after the stage released its own): (nq, k) distances = -Chamfer ascending and
// store slots (-1 / +inf padded).
void multivector_search(const KernelTable& kernels, const FdeDraws& encoder, const TokenSets& queries,
                        const TokenStoreView& store, std::size_t c, std::size_t k, double carve_tau,
                        std::size_t threads, const CandidateStage& stage, float* out_distances,
                        std::int64_t* out_slots);

}  // namespace simdex
