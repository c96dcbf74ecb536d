// The multi-vector side of a MultiVectorIndex search, shared by the bindings of every encoding
// index that runs it in one call (HnswGraph.search_multivector, FlatCore.search_multivector,
// multivector_search_pq): the encoder object, the query sets and the token store as Python
// hands them over, and the pipeline run with the GIL released (index/multivector.hpp).
#pragma once
#include <string>
#include <vector>

#include "bindings_common.hpp"
#include "bindings_ids.hpp"
#include "index/multivector.hpp"
#include "index/rerank.hpp"

namespace simdex {

// simdex._core.FdeEncoder: the draws of one MuveraEncoder (copied in at construction) and the
// encoding of CSR token sets.
class FdeEncoder {
   public:
    // matrix (dim, r_reps * (k_sim + d_proj)) float32; final_index (raw_dim,) int32 in
    // [0, final_dim) and final_sign (raw_dim,) float32 when final_dim > 0, else None.
    FdeEncoder(const py::array& matrix, std::size_t dim, std::size_t k_sim, std::size_t d_proj,
               std::size_t r_reps, const py::object& final_index, const py::object& final_sign,
               std::size_t final_dim);

    // tokens (T, dim) float32, offsets (n + 1,) int64 -> (n, out_dim) float32
    FloatArray encode(const py::array& tokens, const py::array& offsets, bool documents, bool fill_empty,
                      const py::object& threads) const;

    FdeDraws draws() const;
    std::size_t dim() const { return params_.dim; }
    std::size_t out_dim() const { return params_.out_dim(); }

   private:
    FdeParams params_;
    std::vector<float> hash_, proj_;  // split_fde_matrix of the matrix
    std::vector<std::int32_t> final_index_;
    std::vector<float> final_sign_;
};

// CSR token sets: tokens (T, dim) of `spec`, offsets (n + 1,) int64; re-checked.
TokenSets token_sets(const py::array& tokens, const py::array& offsets, const TokenSpec& spec, bool nonempty,
                     const char* what);

// One multi-vector search as Python hands it over: the query sets (q_tokens (T, dim) float32,
// q_offsets (nq + 1,) int64), the token store (TokenStore.scoring(): its RerankRows, whose
// rows are the tokens of every set, and offsets (sets + 1,) int64), k, the candidates per
// query and carve (None or tau).
struct MultiVectorRequest {
    FdeDraws encoder;
    TokenSets queries;
    TokenStoreView store;
    std::size_t k = 0, candidates = 0;
    double carve = 0.0;  // NaN: no ball carving
};

MultiVectorRequest multivector_request(const FdeEncoder& encoder, const py::array& q_tokens,
                                       const py::array& q_offsets, const py::tuple& store, std::size_t k,
                                       std::size_t candidates, const py::object& carve);

// Runs multivector_search with the GIL released and maps the slots to ids through `table`:
// (distances = -Chamfer (nq, k) float32 ascending, ids (nq, k) int64, -1 padded).
py::tuple run_multivector(const KernelTable& kernels, const MultiVectorRequest& request, IdTable& table,
                          std::size_t threads, const CandidateStage& stage);

}  // namespace simdex
