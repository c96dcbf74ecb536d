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

class QueryScorer {
   public:
    QueryScorer(const KernelTable& table, const StoreSpec& spec);

    // query: float32 (dim,) for dense storage, or a packed code (row_bytes,) for bits.
    void set_query(const void* query);
    // Set the query from a stored row (decoded for dense storage).
    void set_query_from_row(const std::uint8_t* row);

    float distance(const std::uint8_t* row) const;
    // rows: (n, row_bytes) contiguous;  out: (n,) float32
    void distances(const std::uint8_t* rows, std::size_t n, float* out) const;

    const StoreSpec& spec() const { return spec_; }

   private:
    StoreSpec spec_;
    const KernelTable* table_;
    const void* query_ = nullptr;       // what the kernels read as the query
    std::vector<float> buffer_;         // prepared query (u8: scaled or shifted)
    std::vector<std::uint8_t> code_;    // copy of a bits query taken from a row
    float offset_ = 0;                  // u8 + dot: <q, lo>
};

}  // namespace simdex
