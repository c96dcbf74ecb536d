// Bindings: SIMD level control, kernels for tests, exact search and pairwise distances.
#include <algorithm>
#include <set>
#include <vector>

#include "bindings_common.hpp"
#include "index/exact.hpp"

namespace simdex {
namespace {


// Every row of `data` against every query with the single-pair kernels (tests use this to
// check the pair kernels; search uses the rows/tile kernels).
FloatArray pair_distances(const py::array& data, std::size_t n, const py::array& queries,
                          std::size_t nq, const std::string& storage, const std::string& metric,
                          std::size_t dim, const py::object& lo, const py::object& scale) {
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    FloatArray out({nq, n});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        QueryScorer scorer(active_kernels(), spec);
        for (std::size_t i = 0; i < nq; ++i) {
            scorer.set_query(q + i * query_bytes(spec));
            for (std::size_t j = 0; j < n; ++j) dst[i * n + j] = scorer.distance(rows + j * spec.row_bytes);
        }
    }
    return out;
}

FloatArray pairwise(const py::array& data, std::size_t n, const py::array& queries, std::size_t nq,
                    const std::string& storage, const std::string& metric, std::size_t dim,
                    const py::object& lo, const py::object& scale, const py::object& threads) {
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, n});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        pairwise_distances(active_kernels(), spec, rows, n, q, nq, thread_n, dst);
    }
    return out;
}

py::tuple search(const py::array& data, std::size_t n, const py::array& queries, std::size_t nq,
                 std::size_t k, const std::string& storage, const std::string& metric,
                 std::size_t dim, const py::object& lo, const py::object& scale,
                 const py::object& mask, const py::object& threads) {
    check_k(k);
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        exact_search(active_kernels(), spec, rows, n, q, nq, k, mask_ptr, thread_n, d_ptr, s_ptr);
    });
}

py::tuple rerank(const py::array& data, std::size_t n, const py::array& queries, std::size_t nq,
                 const py::array& candidates, std::size_t c, std::size_t k,
                 const std::string& storage, const std::string& metric, std::size_t dim,
                 const py::object& lo, const py::object& scale, const py::object& threads) {
    check_k(k);
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    const std::int64_t* cand = typed<std::int64_t>(candidates, nq * c, "candidates");
    for (std::size_t i = 0; i < nq * c; ++i)
        if (cand[i] >= static_cast<std::int64_t>(n))
            throw std::invalid_argument("candidate slot " + std::to_string(cand[i]) +
                                        " is out of range for " + std::to_string(n) + " rows");
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        rerank_candidates(active_kernels(), spec, rows, q, nq, cand, c, k, thread_n, d_ptr, s_ptr);
    });
}

// (nq, n) float32 inner products of queries (nq, dim) with rows (n, dim), GIL released.
FloatArray inner_products_py(const py::array& rows, std::size_t n, const py::array& queries,
                             std::size_t nq, std::size_t dim, const py::object& threads) {
    const float* r = typed<float>(rows, n * dim, "rows");
    const float* q = typed<float>(queries, nq * dim, "queries");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, n});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        inner_products(active_kernels(), r, n, q, nq, dim, thread_n, o);
    }
    return out;
}

// True when every float32 value is finite: one pass, exponent-bit test (vectorises at the
// baseline ISA; bandwidth-bound), GIL released.
bool all_finite(const py::array& values) {
    const auto* bits = typed<std::uint32_t>(values, static_cast<std::size_t>(values.size()), "values");
    std::size_t n = static_cast<std::size_t>(values.size());
    std::uint32_t bad = 0;
    {
        py::gil_scoped_release release;
        const std::size_t chunk = 1 << 16;
        for (std::size_t start = 0; start < n && !bad; start += chunk) {
            std::size_t end = std::min(n, start + chunk);
            for (std::size_t i = start; i < end; ++i)
                bad |= static_cast<std::uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
        }
    }
    return bad == 0;
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("detected_level", [] { return std::string(level_name(detected_level())); });
    m.def("active_level", [] { return std::string(level_name(active_level())); });
    m.def("set_active_level", [](const std::string& name) { set_active_level(parse_level(name)); });
    m.def("cpu_features", &cpu_features);
    m.def("tiers", [] {
        py::list out;
        for (const TierInfo& t : tier_table())
            out.append(py::make_tuple(t.name, std::string(level_name(t.parent)), t.features, t.built));
        return out;
    }, "Every CPU tier: (name, parent, required features, compiled in this build), lowest first");
    m.def("select_tier", [](const std::set<std::string>& features) {
        return std::string(level_name(select_tier(features)));
    }, py::arg("features"), "The tier a CPU with these features runs (pure; any architecture)");
    m.def("missing_features", [](const std::string& tier, const std::set<std::string>& features) {
        return missing_features(parse_level(tier), features);
    }, py::arg("tier"), py::arg("features"), "Features of `tier` that `features` lacks");
    m.def("env_warning", &env_warning);
    m.def("available_cores", &available_cores);
    m.def("pair_distances", &pair_distances, py::arg("data"), py::arg("n"), py::arg("queries"),
          py::arg("nq"), py::arg("storage"), py::arg("metric"), py::arg("dim"),
          py::arg("lo") = py::none(), py::arg("scale") = py::none());
    m.def("pairwise", &pairwise, py::arg("data"), py::arg("n"), py::arg("queries"), py::arg("nq"),
          py::arg("storage"), py::arg("metric"), py::arg("dim"), py::arg("lo") = py::none(),
          py::arg("scale") = py::none(), py::arg("threads") = py::none());
    m.def("search", &search, py::arg("data"), py::arg("n"), py::arg("queries"), py::arg("nq"),
          py::arg("k"), py::arg("storage"), py::arg("metric"), py::arg("dim"),
          py::arg("lo") = py::none(), py::arg("scale") = py::none(), py::arg("mask") = py::none(),
          py::arg("threads") = py::none());
    m.def("all_finite", &all_finite, py::arg("values"));
    m.def("inner_products", &inner_products_py, py::arg("rows"), py::arg("n"), py::arg("queries"),
          py::arg("nq"), py::arg("dim"), py::arg("threads") = py::none());
    m.def("rerank", &rerank, py::arg("data"), py::arg("n"), py::arg("queries"), py::arg("nq"),
          py::arg("candidates"), py::arg("c"), py::arg("k"), py::arg("storage"), py::arg("metric"),
          py::arg("dim"), py::arg("lo") = py::none(), py::arg("scale") = py::none(),
          py::arg("threads") = py::none());
}

}  // namespace simdex
