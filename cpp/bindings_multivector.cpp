// simdex._core: multi-vector scoring, MUVERA encodings and the multi-vector search pipeline
// (index/multivector.hpp, bindings_multivector.hpp). Python (simdex/multivector.py) validates
// the token sets; these re-check cheaply.
#include "bindings_multivector.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "bindings_pipeline.hpp"
#include "index/pq.hpp"

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

}  // namespace

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


FdeEncoder::FdeEncoder(const py::array& matrix, std::size_t dim, std::size_t k_sim, std::size_t d_proj,
                       std::size_t r_reps, const py::object& final_index, const py::object& final_sign,
                       std::size_t final_dim) {
    if (dim < 1 || k_sim < 1 || k_sim > 16 || d_proj < 1 || r_reps < 1)
        throw std::invalid_argument("FdeEncoder: need dim >= 1, 1 <= k_sim <= 16, d_proj >= 1, r_reps >= 1");
    params_.dim = dim;
    params_.k_sim = k_sim;
    params_.d_proj = d_proj;
    params_.r_reps = r_reps;
    params_.final_dim = final_dim;
    const std::size_t count = dim * r_reps * (k_sim + d_proj);
    split_fde_matrix(params_, typed<float>(matrix, count, "fde matrix"), hash_, proj_);
    if (final_dim) {
        const std::size_t raw = params_.raw_dim();
        const std::int32_t* index = typed<std::int32_t>(final_index.cast<py::array>(), raw, "final_index");
        const float* sign = typed<float>(final_sign.cast<py::array>(), raw, "final_sign");
        for (std::size_t c = 0; c < raw; ++c)
            if (index[c] < 0 || static_cast<std::size_t>(index[c]) >= final_dim)
                throw std::invalid_argument("final_index holds " + std::to_string(index[c]) + ", outside [0, " +
                                            std::to_string(final_dim) + ")");
        final_index_.assign(index, index + raw);
        final_sign_.assign(sign, sign + raw);
    }
}

FdeDraws FdeEncoder::draws() const {
    FdeDraws d;
    d.params = params_;
    d.hash = hash_.data();
    d.proj = proj_.data();
    d.final_index = params_.final_dim ? final_index_.data() : nullptr;
    d.final_sign = params_.final_dim ? final_sign_.data() : nullptr;
    return d;
}

FloatArray FdeEncoder::encode(const py::array& tokens, const py::array& offsets, bool documents, bool fill_empty,
                              const py::object& threads) const {
    TokenSpec f32;
    f32.dim = params_.dim;
    TokenSets sets = token_sets(tokens, offsets, f32, true, "tokens");
    FdeDraws d = draws();
    d.params.documents = documents;
    d.params.fill_empty = documents && fill_empty;
    std::size_t t = thread_count(threads);
    FloatArray out({sets.n, d.params.out_dim()});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        fde_encode(active_kernels(), d, sets, t, dst);
    }
    return out;
}

namespace {

// The token store as TokenStore.scoring() hands it over: (RerankRows, offsets (sets + 1,) int64).
TokenStoreView token_store(const py::tuple& store, std::size_t dim) {
    if (store.size() != 2) throw std::invalid_argument("token store: expected (RerankRows, offsets)");
    TokenStoreView view;
    view.rows = rerank_arg(store[0]);
    if (!view.rows) throw std::invalid_argument("token store: no rows");
    if (view.rows->spec().dim != dim)
        throw std::invalid_argument("token store: rows of dimension " + std::to_string(view.rows->spec().dim) +
                                    ", queries of " + std::to_string(dim));
    py::array offsets = store[1].cast<py::array>();
    if (offsets.ndim() != 1 || offsets.size() < 1)
        throw std::invalid_argument("token store: offsets must be a 1-D array of sets + 1 int64");
    view.sets = static_cast<std::size_t>(offsets.size()) - 1;
    view.offsets = typed<std::int64_t>(offsets, view.sets + 1, "token store offsets");
    return view;
}

double carve_arg(const py::object& carve) {
    return carve.is_none() ? std::numeric_limits<double>::quiet_NaN() : carve.cast<double>();
}

}  // namespace

MultiVectorRequest multivector_request(const FdeEncoder& encoder, const py::array& q_tokens,
                                       const py::array& q_offsets, const py::tuple& store, std::size_t k,
                                       std::size_t candidates, const py::object& carve) {
    check_k(k);
    MultiVectorRequest r;
    r.encoder = encoder.draws();
    TokenSpec f32;
    f32.dim = encoder.dim();
    r.queries = token_sets(q_tokens, q_offsets, f32, true, "query tokens");
    r.store = token_store(store, encoder.dim());
    if (r.queries.n * std::max(candidates, k) >= (std::size_t{1} << 32))
        throw std::invalid_argument("multi-vector search: at most 2^32 (query, candidate) pairs per call");
    r.k = k;
    r.candidates = std::max(candidates, k);
    r.carve = carve_arg(carve);
    return r;
}

py::tuple run_multivector(const KernelTable& kernels, const MultiVectorRequest& r, IdTable& table,
                          std::size_t threads, const CandidateStage& stage) {
    return topk_result(r.queries.n, r.k, [&](float* d, std::int64_t* ids) {
        multivector_search(kernels, r.encoder, r.queries, r.store, r.candidates, r.k, r.carve, threads, stage, d,
                           ids);
        table.map_slots(ids, r.queries.n * r.k);
    });
}

void bind_multivector(py::module_& m) {
    m.def("chamfer", &chamfer_py, py::arg("q_tokens"), py::arg("q_offsets"), py::arg("d_tokens"), py::arg("d_offsets"),
          py::arg("dim"), py::arg("storage"), py::arg("lo") = py::none(), py::arg("scale") = py::none(),
          py::arg("threads") = py::none(),
          "Exact Chamfer scores (nq, nd) float32 of CSR query sets against CSR document sets.");
    py::class_<FdeEncoder>(m, "FdeEncoder")
        .def(py::init<const py::array&, std::size_t, std::size_t, std::size_t, std::size_t, const py::object&,
                      const py::object&, std::size_t>(),
             py::arg("matrix"), py::arg("dim"), py::arg("k_sim"), py::arg("d_proj"), py::arg("r_reps"),
             py::arg("final_index"), py::arg("final_sign"), py::arg("final_dim"))
        .def("encode", &FdeEncoder::encode, py::arg("tokens"), py::arg("offsets"), py::arg("documents"),
             py::arg("fill_empty"), py::arg("threads") = py::none(),
             "MUVERA fixed dimensional encodings (n, out_dim) float32 of CSR token sets.")
        .def_property_readonly("out_dim", &FdeEncoder::out_dim);
    m.def("carve_sets", [](const py::array& tokens, const py::array& offsets, std::size_t dim, double tau) {
              TokenSpec f32;
              f32.dim = dim;
              TokenSets sets = token_sets(tokens, offsets, f32, true, "query tokens");
              std::vector<float> out;
              std::vector<std::int64_t> out_offsets;
              {
                  py::gil_scoped_release release;
                  carve_sets(sets, tau, out, out_offsets);
              }
              FloatArray t({out_offsets.back(), static_cast<std::int64_t>(dim)});
              if (!out.empty()) std::memcpy(t.mutable_data(), out.data(), out.size() * 4);
              IdArray o(static_cast<py::ssize_t>(out_offsets.size()));
              std::memcpy(o.mutable_data(), out_offsets.data(), out_offsets.size() * 8);
              return py::make_tuple(t, o);
          },
          py::arg("tokens"), py::arg("offsets"), py::arg("dim"), py::arg("tau"),
          "Ball carving of CSR query sets: (tokens (T', dim) float32, offsets (n + 1,) int64).");
}

}  // namespace simdex
