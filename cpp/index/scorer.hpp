// How rows are stored and compared: the storage type, the metric, and a per-query scorer
// that holds pointers taken from the kernel table at construction (no CPU checks later).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"

namespace simdex {

enum class Storage : int { f32 = 0, f16 = 1, bf16 = 2, u8 = 3, bits = 4 };
enum class Metric : int { l2 = 0, ip = 1, cosine = 2, hamming = 3 };

// Distances returned by every index (ascending = closer):
//   l2: squared Euclidean;  ip and cosine: 1 - <q, x> (cosine rows and queries are unit
//   length, normalised in Python);  hamming: number of differing bits.
struct StoreSpec {
    Storage storage = Storage::f32;
    Metric metric = Metric::l2;
    std::size_t dim = 0;        // elements per row (bits: number of bits)
    std::size_t row_bytes = 0;  // bytes per stored row
    // Scalar quantization (u8): x_j = lo_j + scale_j * code_j. Both (dim,) float32.
    const float* lo = nullptr;
    const float* scale = nullptr;
};

std::size_t row_bytes_for(Storage storage, std::size_t dim);
// Bytes of one query: float32 (dim,) for dense storage, the packed code for bits.
std::size_t query_bytes(const StoreSpec& spec);

// Decode one stored row to float32 (dim,). Not for bits.
void decode_row(const StoreSpec& spec, const std::uint8_t* row, float* out);

// A query ready for the kernels: float32 (int8 storage: scaled or shifted, plus a dot
// offset), or a packed code (bits). With int8 queries, data holds int8 values and the dot
// product is offset + scale * sum_j data[j] * code[j]; scale = 0 otherwise.
struct PreparedQuery {
    const void* data = nullptr;
    float offset = 0;
    float scale = 0;
};

// The one scorer of every index: the kernels of one storage and metric, taken from the
// kernel table at construction, so hot loops make no CPU or storage decision beyond one
// predictable switch. Exact scans (distances over contiguous rows), re-ranking and graph
// walks all score through it. spec.lo / spec.scale (int8) must outlive the scorer.
class Scorer {
   public:
    Scorer() = default;
    Scorer(const KernelTable& table, const StoreSpec& spec);

    // int8 storage with an inner-product metric: prepared queries are rounded to int8 too
    // (one scale per query), so distances are integer dot products (VNNI).
    void set_int8_queries(bool on);
    bool int8_queries() const { return int8_queries_; }
    const StoreSpec& spec() const { return spec_; }
    const KernelTable& kernels() const { return *table_; }

    // query: float32 (dim,) for dense storage, or a packed code (row_bytes,) for bits;
    // buffer keeps any transformed copy alive.
    PreparedQuery prepare(const void* query, std::vector<float>& buffer) const;
    // A stored row as a query (decoded through `decoded` for f16 / bf16 / int8 rows).
    PreparedQuery prepare_row(const std::uint8_t* row, std::vector<float>& buffer,
                              std::vector<float>& decoded) const;

    float distance(const PreparedQuery& q, const std::uint8_t* row) const {
        switch (spec_.storage) {
            case Storage::f32: {
                float v = f32_(static_cast<const float*>(q.data), reinterpret_cast<const float*>(row), spec_.dim);
                return l2_ ? v : 1.0f - v;
            }
            case Storage::f16:
            case Storage::bf16: {
                float v = h16_(static_cast<const float*>(q.data), reinterpret_cast<const std::uint16_t*>(row),
                               spec_.dim);
                return l2_ ? v : 1.0f - v;
            }
            case Storage::u8:
                if (l2_) return u8_l2_(static_cast<const float*>(q.data), spec_.scale, row, spec_.dim);
                if (q.scale != 0)
                    return 1.0f - (q.offset + q.scale * static_cast<float>(s8u8_(
                                                  static_cast<const std::int8_t*>(q.data), row, spec_.dim)));
                return 1.0f - (q.offset + u8_dot_(static_cast<const float*>(q.data), row, spec_.dim));
            case Storage::bits:
                return static_cast<float>(
                    hamming_(static_cast<const std::uint8_t*>(q.data), row, spec_.row_bytes));
        }
        return 0;
    }
    // rows: (n, row_bytes) contiguous; out: (n,) float32 (the rows kernels).
    void distances(const PreparedQuery& q, const std::uint8_t* rows, std::size_t n, float* out) const;

   private:
    StoreSpec spec_;
    const KernelTable* table_ = nullptr;
    bool l2_ = true;  // l2: squared distance; otherwise 1 - dot (ip, cosine)
    bool int8_queries_ = false;
    float (*f32_)(const float*, const float*, std::size_t) = nullptr;
    float (*h16_)(const float*, const std::uint16_t*, std::size_t) = nullptr;  // f16 or bf16
    float (*u8_dot_)(const float*, const std::uint8_t*, std::size_t) = nullptr;
    float (*u8_l2_)(const float*, const float*, const std::uint8_t*, std::size_t) = nullptr;
    std::int32_t (*s8u8_)(const std::int8_t*, const std::uint8_t*, std::size_t) = nullptr;
    std::uint32_t (*hamming_)(const std::uint8_t*, const std::uint8_t*, std::size_t) = nullptr;
};

// A Scorer holding one prepared query (exact scans and re-ranking, one query at a time).
class QueryScorer {
   public:
    QueryScorer(const KernelTable& table, const StoreSpec& spec) : scorer_(table, spec) {}

    // query: float32 (dim,) for dense storage, or a packed code (row_bytes,) for bits.
    void set_query(const void* query) { query_ = scorer_.prepare(query, buffer_); }
    // Set the query from a stored row (decoded for dense storage).
    void set_query_from_row(const std::uint8_t* row) { query_ = scorer_.prepare_row(row, buffer_, decoded_); }

    float distance(const std::uint8_t* row) const { return scorer_.distance(query_, row); }
    // rows: (n, row_bytes) contiguous;  out: (n,) float32
    void distances(const std::uint8_t* rows, std::size_t n, float* out) const {
        scorer_.distances(query_, rows, n, out);
    }
    const StoreSpec& spec() const { return scorer_.spec(); }

   private:
    Scorer scorer_;
    PreparedQuery query_;
    std::vector<float> buffer_, decoded_;
};

}  // namespace simdex
