// Bit-plane query blocks as BinaryIndex hands them over (shared by the scan and the graph
// pipelines of bindings_binary.cpp and bindings_hnsw.cpp).
#pragma once
#include <string>

#include "bindings_common.hpp"
#include "index/binary.hpp"

namespace simdex {

inline PlaneScoring parse_scoring(const std::string& s) {
    if (s == "symmetric") return PlaneScoring::symmetric;
    if (s == "asymmetric") return PlaneScoring::asymmetric;
    throw std::invalid_argument("scoring must be 'symmetric' or 'asymmetric'; got '" + s + "'");
}

inline void check_planes(std::size_t bits_q, std::size_t bits_x, std::size_t plane_bytes) {
    if (bits_q < 1 || bits_x < 1 || plane_bytes < 1)
        throw std::invalid_argument("bit planes need bits >= 1 and plane_bytes >= 1; got bits_q=" +
                                    std::to_string(bits_q) + ", bits_x=" + std::to_string(bits_x) +
                                    ", plane_bytes=" + std::to_string(plane_bytes));
}

// Query block and weights as the scan reads them; checks every size.
inline PlaneQueries make_queries(const std::string& scoring, const py::array& queries, std::size_t nq,
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

}  // namespace simdex
