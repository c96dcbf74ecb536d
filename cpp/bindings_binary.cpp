// Bindings for the binary module: the bit-plane kernels (for tests) and the threaded
// bit-plane top-k scan used by BinaryIndex. Python validates; these re-check sizes.
#include <string>

#include "bindings_common.hpp"
#include "index/binary.hpp"

namespace simdex {
namespace {


PlaneScoring parse_scoring(const std::string& s) {
    if (s == "symmetric") return PlaneScoring::symmetric;
    if (s == "asymmetric") return PlaneScoring::asymmetric;
    throw std::invalid_argument("scoring must be 'symmetric' or 'asymmetric'; got '" + s + "'");
}

void check_planes(std::size_t bits_q, std::size_t bits_x, std::size_t plane_bytes) {
    if (bits_q < 1 || bits_x < 1 || plane_bytes < 1)
        throw std::invalid_argument("bit planes need bits >= 1 and plane_bytes >= 1; got bits_q=" +
                                    std::to_string(bits_q) + ", bits_x=" + std::to_string(bits_x) +
                                    ", plane_bytes=" + std::to_string(plane_bytes));
}

// Query block and weights as the scan reads them; checks every size.
PlaneQueries make_queries(const std::string& scoring, const py::array& queries, std::size_t nq,
                          std::size_t bits_q, std::size_t bits_x, std::size_t plane_bytes,
                          const py::array& weights, const py::array& offsets) {
    PlaneQueries pq;
    pq.scoring = parse_scoring(scoring);
    check_planes(pq.scoring == PlaneScoring::symmetric ? bits_q : 1, bits_x, plane_bytes);
    if (pq.scoring == PlaneScoring::symmetric) {
        pq.data = array_bytes(queries, nq * bits_q * plane_bytes, 1, "queries");
        pq.bits_q = bits_q;
        pq.weights = typed<float>(weights, bits_q * bits_x, "weights");
    } else {
        pq.data = typed<float>(queries, nq * 8 * plane_bytes, "queries");
        pq.bits_q = 0;
        pq.weights = typed<float>(weights, bits_x, "weights");
    }
    pq.offsets = typed<float>(offsets, nq, "offsets");
    return pq;
}

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

py::tuple search(const py::array& rows, std::size_t n, std::size_t bits_x, std::size_t plane_bytes,
                 const std::string& scoring, const py::array& queries, std::size_t nq,
                 std::size_t bits_q, const py::array& weights, const py::array& offsets,
                 std::size_t k, const py::object& mask, const py::object& threads) {
    check_k(k);
    PlaneQueries pq = make_queries(scoring, queries, nq, bits_q, bits_x, plane_bytes, weights, offsets);
    const std::uint8_t* r = array_bytes(rows, n * bits_x * plane_bytes, 1, "rows");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        planes_search(active_kernels(), r, n, bits_x, plane_bytes, pq, nq, k, mask_ptr, thread_n,
                      d_ptr, s_ptr);
    });
}

FloatArray score_slots(const py::array& rows, std::size_t n, std::size_t bits_x, std::size_t plane_bytes,
                       const std::string& scoring, const py::array& queries, std::size_t nq,
                       std::size_t bits_q, const py::array& weights, const py::array& offsets,
                       const py::array& candidates, std::size_t c, const py::object& threads) {
    PlaneQueries pq = make_queries(scoring, queries, nq, bits_q, bits_x, plane_bytes, weights, offsets);
    const std::uint8_t* r = array_bytes(rows, n * bits_x * plane_bytes, 1, "rows");
    const std::int64_t* cand = typed<std::int64_t>(candidates, nq * c, "candidates");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, c});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        planes_score_slots(active_kernels(), r, n, bits_x, plane_bytes, pq, nq, cand, c, thread_n, dst);
    }
    return out;
}

}  // namespace

void bind_binary(py::module_& m) {
    m.def("binary_planes_xor", &planes_xor, py::arg("query"), py::arg("bits_q"), py::arg("rows"),
          py::arg("n"), py::arg("bits_x"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    m.def("binary_planes_float", &planes_float, py::arg("q_bits"), py::arg("rows"), py::arg("n"),
          py::arg("bits"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    m.def("binary_search", &search, py::arg("rows"), py::arg("n"), py::arg("bits_x"),
          py::arg("plane_bytes"), py::arg("scoring"), py::arg("queries"), py::arg("nq"),
          py::arg("bits_q"), py::arg("weights"), py::arg("offsets"), py::arg("k"),
          py::arg("mask") = py::none(), py::arg("threads") = py::none());
    m.def("binary_score_slots", &score_slots, py::arg("rows"), py::arg("n"), py::arg("bits_x"),
          py::arg("plane_bytes"), py::arg("scoring"), py::arg("queries"), py::arg("nq"),
          py::arg("bits_q"), py::arg("weights"), py::arg("offsets"), py::arg("candidates"),
          py::arg("c"), py::arg("threads") = py::none());
}

}  // namespace simdex
