// Bindings for product quantization: ADC / fast-scan search, IVF search, k-means helper.
// Python (simdex/pq.py, ivf.py, kmeans.py) validates everything; these re-check sizes.
#include <string>
#include <vector>

#include <limits>

#include "bindings_common.hpp"
#include "bindings_pipeline.hpp"
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

constexpr std::size_t kQueryBatch = 256;  // queries per table batch: bounds the (b, m, ksub) tables

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

// PQIndex.search in one call: rotate the queries (OPQ), build the tables, scan the codes
// (8-bit ADC or 4-bit fast-scan) for `candidates` per query, re-rank them against the store
// rows if given, map slots to ids.
py::tuple pq_pipeline(const py::array& queries, std::size_t nq, std::size_t k, std::size_t candidates,
                      const py::object& rotation_t, const py::array& books, const py::array& books_t,
                      const py::array& norms, std::size_t m, int nbits,
                      bool l2, const py::array& codes, std::size_t n, const py::object& mask,
                      const py::object& rows, IdTable& table, const py::object& threads) {
    check_k(k);
    if (nbits != 8 && nbits != 4) throw std::invalid_argument("nbits must be 8 or 4");
    const std::size_t ksub = nbits == 8 ? 256 : 16;
    const std::size_t dim = static_cast<std::size_t>(queries.size()) / std::max<std::size_t>(nq, 1);
    PqBooks pb = pq_books(books, books_t, norms, m, ksub, dim);
    const float* q = typed<float>(queries, nq * dim, "queries");
    const float* rot = rotation_t.is_none() ? nullptr : typed<float>(rotation_t.cast<py::array>(), dim * dim, "rotation");
    const std::size_t code_bytes = nbits == 8 ? n * m : (n + 31) / 32 * fastscan_m4(m) * 16;
    const std::uint8_t* c = array_bytes(codes, code_bytes, 1, "codes");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    const RerankRows* store = rerank_arg(rows);
    if (store && store->spec().dim != dim) throw std::invalid_argument("re-rank rows of another dimension");
    candidates = store ? std::max(candidates, k) : k;
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
        const KernelTable& kernels = active_kernels();
        std::vector<float> rotated(rot ? nq * dim : 0), cand_d(nq * candidates);
        std::vector<std::int64_t> cand(nq * candidates);
        if (rot) inner_products(kernels, rot, dim, q, nq, dim, thread_n, rotated.data());
        const float* qr = rot ? rotated.data() : q;
        std::vector<float> luts(std::min(nq, kQueryBatch) * m * ksub);
        for (std::size_t start = 0; start < nq; start += kQueryBatch) {
            const std::size_t count = std::min(kQueryBatch, nq - start);
            pq_tables(pb, qr + start * dim, count, l2, thread_n, luts.data());
            PqSearchOutput out{cand_d.data() + start * candidates, cand.data() + start * candidates};
            if (nbits == 8)
                pq_search_u8(kernels, c, n, m, luts.data(), count, candidates, mask_ptr, thread_n, out);
            else
                pq_search_u4(kernels, c, n, m, luts.data(), count, candidates, mask_ptr, thread_n, out);
        }
        finish_candidates(store, q, nq, cand_d.data(), cand.data(), candidates, k, thread_n, table,
                          d_ptr, i_ptr);
    });
}

// simdex._core.IvfStore: the inverted lists of an IVF-PQ index (python/simdex/ivf.py keeps
// the centroids and tables; its reader-writer lock orders appends and searches).
class IvfHandle {
   public:
    IvfHandle(int nbits, std::size_t m, std::size_t nlist) : store_(nbits, m, nlist), m_(m), nlist_(nlist),
        ksub_(nbits == 8 ? 256 : 16) {}

    void append(const py::array& lists, const py::array& codes, const py::array& slots) {
        std::size_t n = static_cast<std::size_t>(lists.size());
        const std::int64_t* l = typed<std::int64_t>(lists, n, "lists");
        const std::uint8_t* c = array_bytes(codes, n * m_, 1, "codes");
        const std::int64_t* s = typed<std::int64_t>(slots, n, "slots");
        py::gil_scoped_release release;
        store_.append(l, c, s, n);
    }

    py::tuple search(const py::object& list_tables, const py::array& base_luts, const py::array& probes,
                     const py::array& probe_bias, std::size_t nq, std::size_t nprobe, std::size_t k,
                     const py::object& mask, std::size_t slot_count, const py::object& threads) {
        check_k(k);
        IvfLists lists = store_.view();
        if (!list_tables.is_none())
            lists.list_tables = typed<float>(list_tables.cast<py::array>(), nlist_ * m_ * ksub_, "list_tables");
        const float* lut_ptr = typed<float>(base_luts, nq * m_ * ksub_, "base_luts");
        const std::int64_t* probe_ptr = typed<std::int64_t>(probes, nq * nprobe, "probes");
        const float* bias_ptr = typed<float>(probe_bias, nq * nprobe, "probe_bias");
        const std::uint8_t* mask_ptr = optional_mask(mask, slot_count);
        std::size_t thread_n = thread_count(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
            ivf_search(active_kernels(), lists, lut_ptr, probe_ptr, bias_ptr, nq, nprobe, k, mask_ptr,
                       slot_count, thread_n, PqSearchOutput{d_ptr, s_ptr});
        });
    }

    // IVFPQIndex.search in one call: nprobe closest centroids (coarse metric), residual
    // tables, list scans for `candidates` per query, re-rank against the store rows if given,
    // slots to ids.
    py::tuple search_pipeline(const py::array& queries, std::size_t nq, std::size_t k, std::size_t candidates,
                              std::size_t nprobe, const py::array& centroids, const std::string& coarse_metric,
                              const py::array& books, const py::array& books_t, const py::array& norms, bool l2, const py::object& list_tables,
                              const py::object& mask, std::size_t slot_count, const py::object& rows, IdTable& table,
                              const py::object& threads) {
        check_k(k);
        const std::size_t dim = static_cast<std::size_t>(queries.size()) / std::max<std::size_t>(nq, 1);
        PqBooks pb = pq_books(books, books_t, norms, m_, ksub_, dim);
        if (nprobe < 1 || nprobe > nlist_) throw std::invalid_argument("nprobe must be in [1, nlist]");
        const float* q = typed<float>(queries, nq * dim, "queries");
        const float* cent = typed<float>(centroids, nlist_ * dim, "centroids");
        IvfLists lists = store_.view();
        if (!list_tables.is_none())
            lists.list_tables = typed<float>(list_tables.cast<py::array>(), nlist_ * m_ * ksub_, "list_tables");
        const std::uint8_t* mask_ptr = optional_mask(mask, slot_count);
        const RerankRows* rerank = rerank_arg(rows);
        if (rerank && rerank->spec().dim != dim) throw std::invalid_argument("re-rank rows of another dimension");
        candidates = rerank ? std::max(candidates, k) : k;
        StoreSpec coarse = make_spec("float32", coarse_metric, dim, py::none(), py::none());
        std::size_t thread_n = thread_count(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            const KernelTable& kernels = active_kernels();
            std::vector<float> bias(nq * nprobe), cand_d(nq * candidates);
            std::vector<std::int64_t> probes(nq * nprobe), cand(nq * candidates);
            exact_search(kernels, coarse, reinterpret_cast<const std::uint8_t*>(cent), nlist_, q, nq, nprobe,
                         nullptr, thread_n, bias.data(), probes.data());
            std::vector<float> luts(std::min(nq, kQueryBatch) * m_ * ksub_);
            for (std::size_t start = 0; start < nq; start += kQueryBatch) {
                const std::size_t count = std::min(kQueryBatch, nq - start);
                // -<q_j, C_jc> (the +1 of sub-space 0 taken back); l2: -2 <q_j, C_jc>, the list
                // tables add the rest
                pq_tables(pb, q + start * dim, count, false, thread_n, luts.data());
                for (std::size_t i = 0; i < count; ++i) {
                    float* first = luts.data() + i * m_ * ksub_;
                    for (std::size_t cc = 0; cc < ksub_; ++cc) first[cc] -= 1.0f;
                }
                if (l2)
                    for (float& v : luts) v *= 2.0f;
                ivf_search(kernels, lists, luts.data(), probes.data() + start * nprobe, bias.data() + start * nprobe,
                           count, nprobe, candidates, mask_ptr, slot_count, thread_n,
                           PqSearchOutput{cand_d.data() + start * candidates, cand.data() + start * candidates});
            }
            finish_candidates(rerank, q, nq, cand_d.data(), cand.data(), candidates, k, thread_n, table,
                              d_ptr, i_ptr);
        });
    }

    // (codes (units, ...) uint8 flat, entry_slots, offsets (nlist + 1,)) as saved.
    py::tuple state() {
        py::array_t<std::uint8_t> codes(store_.units() * store_.unit_bytes());
        IdArray entry(store_.entries()), offsets(nlist_ + 1);
        store_.flatten(codes.mutable_data(), entry.mutable_data(), offsets.mutable_data());
        return py::make_tuple(codes, entry, offsets);
    }

    void restore(const py::array& codes, const py::array& entry_slots, const py::array& offsets,
                 std::size_t slot_count) {
        const std::int64_t* o = typed<std::int64_t>(offsets, nlist_ + 1, "offsets");
        if (o[nlist_] < 0) throw std::invalid_argument("IVF-PQ index file: negative offsets");
        const std::size_t units = static_cast<std::size_t>(o[nlist_]);
        const std::uint8_t* c = array_bytes(codes, units * store_.unit_bytes(), 1, "codes");
        const std::size_t entries = units * (ksub_ == 256 ? 1 : 32);
        const std::int64_t* e = typed<std::int64_t>(entry_slots, entries, "entry_slots");
        store_.restore(c, e, o, slot_count);
    }

    std::size_t nbytes() const { return store_.nbytes(); }

   private:
    IvfStore store_;
    std::size_t m_, nlist_, ksub_;
};

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
                  std::size_t k, const py::object& threads) {
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
        nearest_centroids(active_kernels(), x_ptr, n, d, c_ptr, k, thread_n, l_ptr, d_ptr);
    }
    return py::make_tuple(distances, labels);
}

}  // namespace

void bind_pq(py::module_& m) {
    m.def("pq_adc", &adc, py::arg("lut"), py::arg("codes"), py::arg("n"), py::arg("m"));
    m.def("pq_search_u8", &search_u8, py::arg("codes"), py::arg("n"), py::arg("m"), py::arg("luts"),
          py::arg("nq"), py::arg("k"), py::arg("mask") = py::none(), py::arg("threads") = py::none());
    m.def("pq_search_u4", &search_u4, py::arg("blocks"), py::arg("n"), py::arg("m"), py::arg("luts"),
          py::arg("nq"), py::arg("k"), py::arg("mask") = py::none(), py::arg("threads") = py::none());
    py::class_<IvfHandle>(m, "IvfStore")
        .def(py::init<int, std::size_t, std::size_t>(), py::arg("nbits"), py::arg("m"), py::arg("nlist"))
        .def("append", &IvfHandle::append, py::arg("lists"), py::arg("codes"), py::arg("slots"))
        .def("search", &IvfHandle::search, py::arg("list_tables"), py::arg("base_luts"), py::arg("probes"),
             py::arg("probe_bias"), py::arg("nq"), py::arg("nprobe"), py::arg("k"),
             py::arg("mask") = py::none(), py::arg("slot_count") = 0, py::arg("threads") = py::none())
        .def("search_pipeline", &IvfHandle::search_pipeline, py::arg("queries"), py::arg("nq"), py::arg("k"),
             py::arg("candidates"), py::arg("nprobe"), py::arg("centroids"), py::arg("coarse_metric"),
             py::arg("books"), py::arg("books_t"), py::arg("norms"), py::arg("l2"), py::arg("list_tables"), py::arg("mask"), py::arg("slot_count"),
             py::arg("rows"), py::arg("table"), py::arg("threads"))
        .def("state", &IvfHandle::state)
        .def("restore", &IvfHandle::restore, py::arg("codes"), py::arg("entry_slots"), py::arg("offsets"),
             py::arg("slot_count"))
        .def_property_readonly("nbytes", &IvfHandle::nbytes);
    m.def("pq_tables", &tables, py::arg("books"), py::arg("books_t"), py::arg("norms"), py::arg("m"),
          py::arg("ksub"), py::arg("queries"),
          py::arg("nq"), py::arg("l2"), py::arg("threads") = py::none());
    m.def("pq_pipeline", &pq_pipeline, py::arg("queries"), py::arg("nq"), py::arg("k"), py::arg("candidates"),
          py::arg("rotation_t"), py::arg("books"), py::arg("books_t"), py::arg("norms"), py::arg("m"), py::arg("nbits"), py::arg("l2"), py::arg("codes"),
          py::arg("n"), py::arg("mask"), py::arg("rows"), py::arg("table"), py::arg("threads"));
    m.def("nearest_centroids", &nearest, py::arg("x"), py::arg("n"), py::arg("d"),
          py::arg("centroids"), py::arg("k"), py::arg("threads") = py::none());
    m.def("cluster_sums", &sums_of_clusters, py::arg("x"), py::arg("n"), py::arg("d"),
          py::arg("labels"), py::arg("k"));
}

}  // namespace simdex
