// Bindings for product quantization: ADC / fast-scan search, IVF search, k-means helper.
// Python (simdex/pq.py, ivf.py, kmeans.py) validates everything; these re-check sizes.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <limits>

#include "bindings_common.hpp"
#include "index/pq.hpp"

namespace simdex {
namespace {


// out[i] = sum_j lut[j, codes[i, j]] with the active level's kernel (tests).
FloatArray adc(const py::array& lut, const py::array& codes, std::size_t n, std::size_t m) {
    const float* lut_ptr = typed<float>(lut, m * 256, "lut");
    const std::uint8_t* code_ptr = array_bytes(codes, n * m, 1, "codes");
    FloatArray out(static_cast<py::ssize_t>(n));
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().pq.adc_u8(lut_ptr, code_ptr, n, m, dst);
    }
    return out;
}

py::tuple search_u8(const py::array& codes, std::size_t n, std::size_t m, const py::array& luts,
                    std::size_t nq, std::size_t k, const py::object& mask, const py::object& threads) {
    check_k(k);
    const std::uint8_t* code_ptr = array_bytes(codes, n * m, 1, "codes");
    const float* lut_ptr = typed<float>(luts, nq * m * 256, "luts");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        pq_search_u8(active_kernels(), code_ptr, n, m, lut_ptr, nq, k, mask_ptr, thread_n,
                     PqSearchOutput{d_ptr, s_ptr});
    });
}

py::tuple search_u4(const py::array& blocks, std::size_t n, std::size_t m, const py::array& luts,
                    std::size_t nq, std::size_t k, const py::object& mask, const py::object& threads) {
    check_k(k);
    const std::size_t block_bytes = fastscan_m4(m) * 16;
    const std::uint8_t* block_ptr = array_bytes(blocks, (n + 31) / 32 * block_bytes, 1, "blocks");
    const float* lut_ptr = typed<float>(luts, nq * m * 16, "luts");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        pq_search_u4(active_kernels(), block_ptr, n, m, lut_ptr, nq, k, mask_ptr, thread_n,
                     PqSearchOutput{d_ptr, s_ptr});
    });
}

// What the active level's fastscan_tables_u4 emits (tests): query q scans with the compact tables
// luts[order[q]] and the fixed threshold thresholds[q]; returns masks (nq, nblocks) uint32 and
// the sums of the emitted blocks (nq, nblocks, 32) uint16 (zero where a block was not emitted).
struct TablesEmits {
    std::uint32_t* masks;
    std::uint16_t* sums;
    std::size_t nblocks;
};

void record_emit(void* raw, std::size_t q, std::size_t block, std::uint32_t mask, const std::uint16_t* sums) {
    const TablesEmits& e = *static_cast<TablesEmits*>(raw);
    e.masks[q * e.nblocks + block] = mask;
    std::copy(sums, sums + 32, e.sums + (q * e.nblocks + block) * 32);
}

py::tuple fastscan_tables(const py::array& blocks, std::size_t nblocks, std::size_t m4, const py::array& luts,
                          std::size_t ntables, const py::array& order, const py::array& thresholds) {
    if (m4 == 0 || m4 % 4 != 0) throw std::invalid_argument("m4 must be a positive multiple of 4, got " + std::to_string(m4));
    if (m4 * 63 >= 65536) throw std::invalid_argument("m4 * 63 must be < 65536, got m4 = " + std::to_string(m4));
    const std::uint8_t* b = array_bytes(blocks, nblocks * (m4 / 2) * 32, 1, "blocks");
    const std::uint8_t* t = array_bytes(luts, ntables * m4 * 16, 1, "luts");  // compact tables
    for (std::size_t i = 0; i < ntables * m4 * 16; ++i)
        if (t[i] > 63) throw std::invalid_argument("lut entries must be <= 63, got " + std::to_string(t[i]));
    const std::size_t nq = static_cast<std::size_t>(order.size());
    const std::int64_t* o = typed<std::int64_t>(order, nq, "order");
    std::vector<std::uint16_t> limits(nq);
    const std::uint8_t* th = array_bytes(thresholds, nq * 2, 2, "thresholds");
    std::memcpy(limits.data(), th, nq * 2);
    std::vector<const std::uint8_t*> tables(nq);
    for (std::size_t q = 0; q < nq; ++q) {
        if (o[q] < 0 || static_cast<std::size_t>(o[q]) >= ntables)
            throw std::invalid_argument("order[" + std::to_string(q) + "] = " + std::to_string(o[q]) +
                                        " is not a table index in [0, " + std::to_string(ntables) + ")");
        tables[q] = t + static_cast<std::size_t>(o[q]) * m4 * 16;
    }
    py::array_t<std::uint32_t> masks({nq, nblocks});
    py::array_t<std::uint16_t> sums({nq, nblocks, std::size_t(32)});
    std::fill(masks.mutable_data(), masks.mutable_data() + nq * nblocks, 0u);
    std::fill(sums.mutable_data(), sums.mutable_data() + nq * nblocks * 32, std::uint16_t(0));
    TablesEmits e{masks.mutable_data(), sums.mutable_data(), nblocks};
    {
        py::gil_scoped_release release;
        active_kernels().pq.fastscan_tables_u4(b, nblocks, m4, tables.data(), nq, limits.data(), record_emit, &e);
    }
    return py::make_tuple(masks, sums);
}

// (n, m) 4-bit codes -> fast-scan blocks (ceil(n / 32), m4 / 2, 32) uint8, zero padded,
// written by the one writer of the layout (write_block_row).
py::array_t<std::uint8_t> pack_blocks(const py::array& codes, std::size_t n, std::size_t m) {
    const std::uint8_t* c = array_bytes(codes, n * m, 1, "codes");
    const std::size_t block_bytes = fastscan_m4(m) * 16;
    py::array_t<std::uint8_t> out({(n + 31) / 32, fastscan_m4(m) / 2, std::size_t(32)});
    std::uint8_t* o = out.mutable_data();
    std::fill(o, o + (n + 31) / 32 * block_bytes, 0);
    for (std::size_t i = 0; i < n; ++i) write_block_row(o + i / 32 * block_bytes, i % 32, c + i * m, m);
    return out;
}


// The codebook layouts (books, books_t, norms) as ProductQuantizer caches them.
PqBooks pq_books(const py::array& books, const py::array& books_t, const py::array& norms, std::size_t m,
                 std::size_t ksub, std::size_t dim) {
    PqBooks b;
    b.m = m;
    b.ksub = ksub;
    b.dsub = dim / m;
    if (b.dsub * m != dim || b.dsub == 0) throw std::invalid_argument("queries do not split into m sub-spaces");
    b.books = typed<float>(books, m * ksub * b.dsub, "books");
    b.books_t = typed<float>(books_t, m * ksub * b.dsub, "books_t");
    b.norms = typed<float>(norms, m * ksub, "norms");
    return b;
}

// (nq, m, ksub) tables of queries (nq, dim) (ProductQuantizer.lookup_table).
FloatArray tables(const py::array& books, const py::array& books_t, const py::array& norms, std::size_t m,
                  std::size_t ksub, const py::array& queries, std::size_t nq, bool l2, const py::object& threads) {
    const std::size_t dim = static_cast<std::size_t>(queries.size()) / std::max<std::size_t>(nq, 1);
    PqBooks pb = pq_books(books, books_t, norms, m, ksub, dim);
    const float* q = typed<float>(queries, nq * dim, "queries");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, m, ksub});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        pq_tables(pb, q, nq, l2, thread_n, o);
    }
    return out;
}

py::tuple sums_of_clusters(const py::array& x, std::size_t n, std::size_t d, const py::array& labels,
                           std::size_t k) {
    const float* x_ptr = typed<float>(x, n * d, "x");
    const std::int64_t* label_ptr = typed<std::int64_t>(labels, n, "labels");
    py::array_t<double, py::array::c_style> sums({k, d});
    IdArray counts(static_cast<py::ssize_t>(k));
    double* s = sums.mutable_data();
    std::int64_t* c = counts.mutable_data();
    {
        py::gil_scoped_release release;
        cluster_sums(x_ptr, n, d, label_ptr, k, s, c);
    }
    return py::make_tuple(sums, counts);
}

py::tuple nearest(const py::array& x, std::size_t n, std::size_t d, const py::array& centroids,
                  std::size_t k, const py::object& threads, bool inner_product) {
    if (k < 1) throw std::invalid_argument("need at least one centroid");
    const float* x_ptr = typed<float>(x, n * d, "x");
    const float* c_ptr = typed<float>(centroids, k * d, "centroids");
    std::size_t thread_n = thread_count(threads);
    FloatArray distances(static_cast<py::ssize_t>(n));
    IdArray labels(static_cast<py::ssize_t>(n));
    float* d_ptr = distances.mutable_data();
    std::int64_t* l_ptr = labels.mutable_data();
    {
        py::gil_scoped_release release;
        nearest_centroids(active_kernels(), x_ptr, n, d, c_ptr, k, thread_n, l_ptr, d_ptr, inner_product);
    }
    return py::make_tuple(distances, labels);
}

}  // namespace

void bind_pq(py::module_& m) {
    m.def("pq_adc", &adc, py::arg("lut"), py::arg("codes"), py::arg("n"), py::arg("m"));
    m.def("pq_fastscan_tables", &fastscan_tables, py::arg("blocks"), py::arg("nblocks"), py::arg("m4"),
          py::arg("luts"), py::arg("ntables"), py::arg("order"), py::arg("thresholds"));
    m.def("pq_pack_blocks", &pack_blocks, py::arg("codes"), py::arg("n"), py::arg("m"));
    m.def("pq_search_u8", &search_u8, py::arg("codes"), py::arg("n"), py::arg("m"), py::arg("luts"),
          py::arg("nq"), py::arg("k"), py::arg("mask") = py::none(), py::arg("threads") = py::none());
    m.def("pq_search_u4", &search_u4, py::arg("blocks"), py::arg("n"), py::arg("m"), py::arg("luts"),
          py::arg("nq"), py::arg("k"), py::arg("mask") = py::none(), py::arg("threads") = py::none());
    m.def("pq_tables", &tables, py::arg("books"), py::arg("books_t"), py::arg("norms"), py::arg("m"),
          py::arg("ksub"), py::arg("queries"),
          py::arg("nq"), py::arg("l2"), py::arg("threads") = py::none());
    m.def("nearest_centroids", &nearest, py::arg("x"), py::arg("n"), py::arg("d"),
          py::arg("centroids"), py::arg("k"), py::arg("threads") = py::none(),
          py::arg("inner_product") = false);
    m.def("cluster_sums", &sums_of_clusters, py::arg("x"), py::arg("n"), py::arg("d"),
          py::arg("labels"), py::arg("k"));
}

}  // namespace simdex
