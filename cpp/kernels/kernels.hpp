// The kernel table: every SIMD routine simdex runs, as plain function pointers.
//
// dispatch.cpp fills one table per CPU tier at first use (never at load time) by calling
// register_<op>_<tier>() for the tier and each of its ancestors (scalar -> haswell -> skylake
// -> icelake; scalar -> neon), lowest first: a tier overrides what it implements
// and inherits the rest. Tiers and files are listed once, in CMakeLists.txt.
//
// Rules for tier files (cpp/kernels/<op>/<tier>.cpp):
//   * everything in an anonymous namespace except the one register_<op>_<tier>();
//   * no STL templates and no inline functions from shared headers (they would be
//     compiled with AVX flags and could be merged into baseline callers);
//   * only <cstddef>, <cstdint>, <cstring>, intrinsics headers, this header, and a family
//     body (.inc) included inside the anonymous namespace (compiled per tier, never shared).
//
// Math and precision (the same in every tier):
//   * float16 / bfloat16 rows are widened to float32 and accumulated in float32;
//   * uint8 rows (scalar-quantized "int8" storage) are widened to float32;
//   * no -ffast-math: NaN propagates, the summation order may differ between tiers
//     (blocked partial sums), so results agree to ~ d * eps * |terms|;
//   * tails (d not a multiple of the vector width) are handled with masked loads
//     (AVX-512) or a scalar loop (AVX2, NEON).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/binary/binary.hpp"
#include "kernels/maxsim/maxsim.hpp"
#include "kernels/pq/pq.hpp"

namespace simdex {

// The CPU tiers, in the order of CMakeLists.txt's SIMDEX_TIERS (generated tiers.inc).
#define SIMDEX_TIER(name, parent, features, built) name,
enum class SimdLevel : int {
#include "tiers.inc"
};
#undef SIMDEX_TIER

struct KernelTable {
    SimdLevel level = SimdLevel::scalar;

    // ---- dense: a float32 query q (d,) against one stored row x (d,) ----------------
    // dot_*: sum_j q_j * x_j                     l2_*: sum_j (q_j - x_j)^2
    float (*dot_f32)(const float* q, const float* x, std::size_t d) = nullptr;
    float (*l2_f32)(const float* q, const float* x, std::size_t d) = nullptr;
    float (*dot_f16)(const float* q, const std::uint16_t* x, std::size_t d) = nullptr;
    float (*l2_f16)(const float* q, const std::uint16_t* x, std::size_t d) = nullptr;
    float (*dot_bf16)(const float* q, const std::uint16_t* x, std::size_t d) = nullptr;
    float (*l2_bf16)(const float* q, const std::uint16_t* x, std::size_t d) = nullptr;
    // uint8 codes: dot_u8 = sum_j q_j * x_j;  l2_u8 = sum_j (q_j - scale_j * x_j)^2
    // (the caller folds the per-dimension offset and scale of scalar quantization into q)
    float (*dot_u8)(const float* q, const std::uint8_t* x, std::size_t d) = nullptr;
    float (*l2_u8)(const float* q, const float* scale, const std::uint8_t* x,
                   std::size_t d) = nullptr;

    // ---- dense, one query against n contiguous rows ---------------------------------
    // x: (n, d) row-major;  out: (n,) float32, same formula as the single-pair kernel.
    void (*dot_f32_rows)(const float* q, const float* x, std::size_t n, std::size_t d,
                         float* out) = nullptr;
    void (*l2_f32_rows)(const float* q, const float* x, std::size_t n, std::size_t d,
                        float* out) = nullptr;
    void (*dot_f16_rows)(const float* q, const std::uint16_t* x, std::size_t n,
                         std::size_t d, float* out) = nullptr;
    void (*l2_f16_rows)(const float* q, const std::uint16_t* x, std::size_t n, std::size_t d,
                        float* out) = nullptr;
    void (*dot_bf16_rows)(const float* q, const std::uint16_t* x, std::size_t n,
                          std::size_t d, float* out) = nullptr;
    void (*l2_bf16_rows)(const float* q, const std::uint16_t* x, std::size_t n,
                         std::size_t d, float* out) = nullptr;
    void (*dot_u8_rows)(const float* q, const std::uint8_t* x, std::size_t n, std::size_t d,
                        float* out) = nullptr;
    void (*l2_u8_rows)(const float* q, const float* scale, const std::uint8_t* x,
                       std::size_t n, std::size_t d, float* out) = nullptr;

    // Cosine in one pass over the rows: dots[i] = <q, x_i>, norms[i] = <x_i, x_i>
    // (x: (n, d) row-major; dots, norms: (n,) float32).
    void (*dot_norm_f32_rows)(const float* q, const float* x, std::size_t n, std::size_t d,
                              float* dots, float* norms) = nullptr;

    // Exact integer dot product of an int8 query with uint8 codes: sum_j q[j] * x[j]
    // (VNNI on AVX-512; the fast path of int8 graphs with quantized queries).
    std::int32_t (*dot_s8u8)(const std::int8_t* q, const std::uint8_t* x, std::size_t d) = nullptr;

    // ---- hamming on packed bit codes (any byte length) ------------------------------
    std::uint32_t (*hamming)(const std::uint8_t* a, const std::uint8_t* b,
                             std::size_t nbytes) = nullptr;
    // Counts under per-query limits (the selection's current bound), for a tile of queries
    // against a tile of rows. queries: (nq, nbytes), x: (n, nbytes), limits: (nq,).
    // For query i, the rows j in [0, n) with hamming(q_i, x_j) < limits[i] are written in
    // increasing j to hit_rows[i * n + h] and their counts to hit_counts[i * n + h],
    // h = 0 .. hits[i] - 1 (hit_rows, hit_counts: (nq, n); hits: (nq,), set by the kernel).
    void (*hamming_tile)(const std::uint8_t* queries, std::size_t nq, const std::uint8_t* x,
                         std::size_t n, std::size_t nbytes, const std::uint32_t* limits,
                         std::uint32_t* hit_rows, std::uint32_t* hit_counts,
                         std::uint32_t* hits) = nullptr;

    // ---- GEMM-style inner products for many queries ---------------------------------
    // queries: (nq, d), x: (n, d), both row-major float32;  out: (nq, n), out[i, j] = <q_i, x_j>
    // with row stride out_stride (floats). scratch: gemm_scratch_floats(nq, n, d) floats.
    // The caller keeps nq <= gemm_tile_q and n <= gemm_tile_n.
    void (*ip_tile_f32)(const float* queries, std::size_t nq, const float* x, std::size_t n,
                        std::size_t d, float* out, std::size_t out_stride,
                        float* scratch) = nullptr;
    std::size_t (*gemm_scratch_floats)(std::size_t nq, std::size_t n, std::size_t d) = nullptr;
    // Rows packed once for many calls (a call with few queries then skips packing them):
    // gemm_pack_rows writes x (n, d) as the tier's tiles read it (every row panel of every
    // dimension block, exactly as ip_tile_f32 packs them per call) into packed:
    // gemm_packed_floats(n, d) floats, 64-byte aligned. The rows [r0, r0 + count) of a tile
    // (r0 a multiple of gemm_tile_n) are then read from packed + r0 * d by ip_tile_f32_packed,
    // which gives the same floats as ip_tile_f32 on those rows. The packed form is the tier's
    // own (panel width, dimension blocks). nullptr in tiers whose tile reads the rows as they
    // are (scalar): callers then call ip_tile_f32.
    void (*gemm_pack_rows)(const float* x, std::size_t n, std::size_t d, float* packed) = nullptr;
    std::size_t (*gemm_packed_floats)(std::size_t n, std::size_t d) = nullptr;
    void (*ip_tile_f32_packed)(const float* queries, std::size_t nq, const float* packed,
                               std::size_t n, std::size_t d, float* out, std::size_t out_stride,
                               float* scratch) = nullptr;
    std::size_t gemm_tile_q = 64;
    std::size_t gemm_tile_n = 256;

    // ---- fast Walsh-Hadamard transform in float64 (RaBitQ's rotation) -------------------
    // y (h,) in place, h a power of two; signs (h,) float32 or nullptr (= all +1):
    // y <- H_h (signs * y) / sqrt(h). Bit-identical in every tier (kernels/fwht/reference.inc).
    void (*fwht_f64)(double* y, const float* signs, std::size_t h) = nullptr;

    // ---- RaBitQ query fast-scan tables (index/rabitq_index.cpp, once per query) ---------
    // v (4 m4,) float64, a rotated query -> lut (ceil(m4 / 4), 64) uint8: per group of 4
    // dimensions 16 complemented 6-bit entries in the compact layout of kernels/pq/pq.hpp
    // (the tables of fastscan_tables_u4); returns the tables' scale, sets *bias and *smax.
    // Bit-identical in every tier (kernels/rabitq/reference.inc states the formula).
    float (*rabitq_tables)(const double* v, std::size_t m4, std::uint8_t* lut, float* bias,
                           float* smax) = nullptr;

    // ---- families with their own header (cpp/kernels/<op>/<op>.hpp) -------------------
    PqKernels pq;
    BinaryKernels binary;
    MaxSimKernels maxsim;
};

// One register function per kernel file; see CMakeLists.txt SIMDEX_KERNEL_FILES.
#define SIMDEX_REGISTER(op, tier) void register_##op##_##tier(KernelTable& table);
#include "kernel_registry.inc"
#undef SIMDEX_REGISTER

}  // namespace simdex
