// Bindings for the binary module: the bit-plane kernels (for tests) and the threaded
// bit-plane top-k scan used by BinaryIndex. Python validates; these re-check sizes.
#include <string>

#include "bindings_binary.hpp"
#include "bindings_pipeline.hpp"
#include "index/exact.hpp"

namespace simdex {
namespace {


FloatArray planes_xor(const py::array& query, std::size_t bits_q, const py::array& rows, std::size_t n,
                      std::size_t bits_x, std::size_t plane_bytes, const py::array& weights,
                      float offset) {
    check_planes(bits_q, bits_x, plane_bytes);
    const std::uint8_t* q = array_bytes(query, bits_q * plane_bytes, 1, "query");
    const std::uint8_t* r = array_bytes(rows, n * bits_x * plane_bytes, 1, "rows");
    const float* w = typed<float>(weights, bits_q * bits_x, "weights");
    FloatArray out(n);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().binary.planes_xor_rows(q, bits_q, r, n, bits_x, plane_bytes, w, offset, dst);
    }
    return out;
}

FloatArray planes_float(const py::array& q_bits, const py::array& rows, std::size_t n, std::size_t bits,
                        std::size_t plane_bytes, const py::array& weights, float offset) {
    check_planes(1, bits, plane_bytes);
    const float* q = typed<float>(q_bits, 8 * plane_bytes, "q_bits");
    const std::uint8_t* r = array_bytes(rows, n * bits * plane_bytes, 1, "rows");
    const float* w = typed<float>(weights, bits, "weights");
    FloatArray out(n);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().binary.planes_float_rows(q, r, n, bits, plane_bytes, w, offset, dst);
    }
    return out;
}

// BinaryIndex.search over a flat scan in one call: score every code (Hamming, or bit planes),
// keep `candidates`, re-rank them against the store rows if given, map slots to ids.
// hamming_alpha > 0: single-plane symmetric codes, scanned by Hamming distance and scored
// 1 - alpha^2 (dim - 2 h); queries_full: (nq, dim) float32 for the re-rank.
py::tuple scan_pipeline(const py::array& rows, std::size_t n, std::size_t bits_x, std::size_t plane_bytes,
                        const std::string& scoring, const py::array& queries, std::size_t nq,
                        std::size_t bits_q, const py::array& weights, const py::array& offsets,
                        float hamming_alpha, std::size_t dim, std::size_t k, std::size_t candidates,
                        const py::object& mask, const py::array& queries_full, const py::object& store, IdTable& table,
                        const py::object& threads) {
    check_k(k);
    PlaneQueries pq = make_queries(scoring, queries, nq, bits_q, bits_x, plane_bytes, weights, offsets);
    const std::uint8_t* r = array_bytes(rows, n * bits_x * plane_bytes, 1, "rows");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    const float* qf = typed<float>(queries_full, nq * dim, "queries_full");
    const RerankRows* rerank = rerank_arg(store);
    if (rerank && rerank->spec().dim != dim) throw std::invalid_argument("re-rank rows of another dimension");
    candidates = rerank ? std::max(candidates, k) : k;
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
        const KernelTable& kernels = active_kernels();
        std::vector<float> cand_d(nq * candidates);
        std::vector<std::int64_t> cand(nq * candidates);
        if (hamming_alpha > 0) {
            StoreSpec codes = make_spec("bits", "hamming", plane_bytes * 8, py::none(), py::none());
            exact_search(kernels, codes, r, n, pq.data, nq, candidates, mask_ptr, thread_n, cand_d.data(),
                         cand.data());
            hamming_to_scores(cand_d.data(), cand_d.size(), hamming_alpha, dim);
        } else {
            planes_search(kernels, r, n, bits_x, plane_bytes, pq, nq, candidates, mask_ptr, thread_n,
                          cand_d.data(), cand.data());
        }
        finish_candidates(rerank, qf, nq, cand_d.data(), cand.data(), candidates, k, thread_n, table,
                          d_ptr, i_ptr);
    });
}

}  // namespace

void bind_binary(py::module_& m) {
    m.def("binary_planes_xor", &planes_xor, py::arg("query"), py::arg("bits_q"), py::arg("rows"),
          py::arg("n"), py::arg("bits_x"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    m.def("binary_planes_float", &planes_float, py::arg("q_bits"), py::arg("rows"), py::arg("n"),
          py::arg("bits"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    m.def("binary_scan_pipeline", &scan_pipeline, py::arg("rows"), py::arg("n"), py::arg("bits_x"),
          py::arg("plane_bytes"), py::arg("scoring"), py::arg("queries"), py::arg("nq"), py::arg("bits_q"),
          py::arg("weights"), py::arg("offsets"), py::arg("hamming_alpha"), py::arg("dim"), py::arg("k"),
          py::arg("candidates"), py::arg("mask"), py::arg("queries_full"), py::arg("store"), py::arg("table"),
          py::arg("threads"));
}

}  // namespace simdex
