// simdex._core: multi-vector scoring and MUVERA encodings (index/multivector.hpp).
// Python (simdex/multivector.py) validates the token sets; these re-check cheaply.
#include "bindings_common.hpp"
#include "bindings_ids.hpp"
#include "index/multivector.hpp"

namespace simdex {
namespace {

TokenSpec token_spec(const std::string& storage, std::size_t dim, const py::object& lo, const py::object& scale) {
    TokenSpec spec;
    spec.dim = dim;
    if (storage == "float32") {
        spec.type = TokenType::f32;
    } else if (storage == "float16") {
        spec.type = TokenType::f16;
    } else if (storage == "int8") {
        spec.type = TokenType::u8;
        if (lo.is_none() || scale.is_none()) throw std::invalid_argument("int8 tokens need trained lo and scale");
        spec.lo = typed<float>(lo.cast<py::array>(), dim, "lo");
        spec.scale = typed<float>(scale.cast<py::array>(), dim, "scale");
    } else {
        throw std::invalid_argument("token storage must be float32, float16 or int8; got '" + storage + "'");
    }
    return spec;
}

// tokens (T, dim) of spec, offsets (n + 1,) int64
TokenSets token_sets(const py::array& tokens, const py::array& offsets, const TokenSpec& spec, bool nonempty,
                     const char* what) {
    TokenSets s;
    s.spec = spec;
    if (offsets.ndim() != 1 || offsets.size() < 1)
        throw std::invalid_argument(std::string(what) + ": offsets must be a 1-D array of n + 1 int64");
    s.n = static_cast<std::size_t>(offsets.size()) - 1;
    s.offsets = typed<std::int64_t>(offsets, s.n + 1, "offsets");
    if (tokens.ndim() != 2 || static_cast<std::size_t>(tokens.shape(1)) != spec.dim)
        throw std::invalid_argument(std::string(what) + ": tokens must have shape (T, " + std::to_string(spec.dim) + ")");
    const std::size_t total = static_cast<std::size_t>(tokens.shape(0));
    const std::size_t itemsize = spec.type == TokenType::f32 ? 4 : spec.type == TokenType::f16 ? 2 : 1;
    s.data = array_bytes(tokens, total * spec.row_bytes(), itemsize, what);
    check_offsets(s.offsets, s.n, total, nonempty, what);
    return s;
}

FloatArray chamfer_py(const py::array& q_tokens, const py::array& q_offsets, const py::array& d_tokens,
                      const py::array& d_offsets, std::size_t dim, const std::string& storage, const py::object& lo,
                      const py::object& scale, const py::object& threads) {
    TokenSpec f32;
    f32.dim = dim;
    TokenSets queries = token_sets(q_tokens, q_offsets, f32, true, "query tokens");
    TokenSets docs = token_sets(d_tokens, d_offsets, token_spec(storage, dim, lo, scale), true, "document tokens");
    std::size_t t = thread_count(threads);
    FloatArray out({queries.n, docs.n});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        chamfer_all(active_kernels(), queries, docs, t, dst);
    }
    return out;
}

py::tuple chamfer_rerank_py(const py::array& q_tokens, const py::array& q_offsets, const py::array& s_tokens,
                            const py::array& s_offsets, std::size_t dim, const std::string& storage,
                            const py::object& lo, const py::object& scale, const py::array& candidates,
                            std::size_t k, IdTable& table, const py::object& threads) {
    check_k(k);
    TokenSpec f32;
    f32.dim = dim;
    TokenSets queries = token_sets(q_tokens, q_offsets, f32, true, "query tokens");
    TokenSets store = token_sets(s_tokens, s_offsets, token_spec(storage, dim, lo, scale), false, "token store");
    if (candidates.ndim() != 2 || static_cast<std::size_t>(candidates.shape(0)) != queries.n)
        throw std::invalid_argument("candidates must have shape (" + std::to_string(queries.n) + ", c)");
    const std::size_t c = static_cast<std::size_t>(candidates.shape(1));
    const std::int64_t* cand = typed<std::int64_t>(candidates, queries.n * c, "candidates");
    std::size_t t = thread_count(threads);
    return topk_result(queries.n, k, [&](float* d, std::int64_t* ids) {
        chamfer_rerank(active_kernels(), queries, store, cand, c, k, t, d, ids);
        table.map_slots(ids, queries.n * k);
    });
}

FloatArray fde_encode_py(const py::array& tokens, const py::array& offsets, std::size_t dim, const py::array& matrix,
                         std::size_t k_sim, std::size_t d_proj, std::size_t r_reps, bool documents, bool fill_empty,
                         const py::object& final_index, const py::object& final_sign, std::size_t final_dim,
                         const py::object& threads) {
    FdeParams p;
    p.dim = dim;
    p.k_sim = k_sim;
    p.d_proj = d_proj;
    p.r_reps = r_reps;
    p.final_dim = final_dim;
    p.documents = documents;
    p.fill_empty = fill_empty;
    if (k_sim < 1 || k_sim > 16 || d_proj < 1 || r_reps < 1)
        throw std::invalid_argument("fde: need 1 <= k_sim <= 16, d_proj >= 1, r_reps >= 1");
    TokenSpec f32;
    f32.dim = dim;
    TokenSets sets = token_sets(tokens, offsets, f32, true, "tokens");
    const float* w = typed<float>(matrix, dim * r_reps * (k_sim + d_proj), "fde matrix");
    const std::int32_t* index = nullptr;
    const float* sign = nullptr;
    if (final_dim) {
        index = typed<std::int32_t>(final_index.cast<py::array>(), p.raw_dim(), "final_index");
        sign = typed<float>(final_sign.cast<py::array>(), p.raw_dim(), "final_sign");
        for (std::size_t c = 0; c < p.raw_dim(); ++c)
            if (index[c] < 0 || static_cast<std::size_t>(index[c]) >= final_dim)
                throw std::invalid_argument("final_index holds " + std::to_string(index[c]) + ", outside [0, " +
                                            std::to_string(final_dim) + ")");
    }
    std::size_t t = thread_count(threads);
    FloatArray out({sets.n, p.out_dim()});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        fde_encode(active_kernels(), p, w, index, sign, sets, t, dst);
    }
    return out;
}

}  // namespace

void bind_multivector(py::module_& m) {
    m.def("chamfer", &chamfer_py, py::arg("q_tokens"), py::arg("q_offsets"), py::arg("d_tokens"), py::arg("d_offsets"),
          py::arg("dim"), py::arg("storage"), py::arg("lo") = py::none(), py::arg("scale") = py::none(),
          py::arg("threads") = py::none(),
          "Exact Chamfer scores (nq, nd) float32 of CSR query sets against CSR document sets.");
    m.def("chamfer_rerank", &chamfer_rerank_py, py::arg("q_tokens"), py::arg("q_offsets"), py::arg("s_tokens"),
          py::arg("s_offsets"), py::arg("dim"), py::arg("storage"), py::arg("lo"), py::arg("scale"),
          py::arg("candidates"), py::arg("k"), py::arg("table"), py::arg("threads") = py::none(),
          "Exact Chamfer re-rank of candidate slots: (-scores (nq, k) ascending, ids (nq, k)).");
    m.def("fde_encode", &fde_encode_py, py::arg("tokens"), py::arg("offsets"), py::arg("dim"), py::arg("matrix"),
          py::arg("k_sim"), py::arg("d_proj"), py::arg("r_reps"), py::arg("documents"), py::arg("fill_empty"),
          py::arg("final_index"), py::arg("final_sign"), py::arg("final_dim"), py::arg("threads") = py::none(),
          "MUVERA fixed dimensional encodings (n, out_dim) float32 of CSR token sets.");
}

}  // namespace simdex
