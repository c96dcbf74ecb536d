// RaBitQ quantizer (Gao & Long, SIGMOD 2024) with Extended RaBitQ multi-bit codes
// (Gao et al., SIGMOD 2025): codes with an unbiased distance estimate and an error bound.
//
// Encoding a vector x (dim,) against a centre c (global, or its IVF list's centroid):
//   r  = x - c, zero-padded to D = dim rounded up to a multiple of 64;   norm = ||r||
//   o  = R r / norm           R: a random orthogonal (D, D) rotation (see Rotation)
//   b_i = [o_i > 0]           the sign plane (1 bit per dimension)
//   a_i in [0, 2^(B-1) - 1]   magnitude level, a_i = min(floor(t |o_i|), 2^(B-1) - 1) for the
//                             scale t that maximises the cosine between o and the code vector
//                             (Extended RaBitQ's criterion; t found by a two-stage grid search)
//   u_i = b_i ? 2^(B-1) + a_i : 2^(B-1) - 1 - a_i      the B-bit code of dimension i
//   xbar_i = u_i - (2^B - 1) / 2 = sign_i (a_i + 1/2)  the code vector (on a centred grid)
// B = 1 is plain RaBitQ (a_i = 0, xbar = (b - 1/2)).
//
// Estimate (both levels, "1-bit" uses only the sign plane, "full" uses all B bits):
//   <r, q> ~= norm * <xbar, R q> / <xbar, o>     (unbiased over the random rotation)
//   |error| <= eps0 * norm * ||q|| * sqrt(1 - cos^2) / (cos * sqrt(D - 1)),
//   cos = <xbar, o> / ||xbar||, with probability ~ erf(eps0 / sqrt 2) (the estimator's error is
//   close to normal with that standard deviation; eps0 = 1.9 is the paper's choice).
// Distances (ascending = closer):  l2 = ||r||^2 + ||q - c||^2 - 2 <r, q - c>
//                                   ip = 1 - <c, q> - <r, q>      (cosine: unit rows and queries)
//
// Queries are rotated once and quantised to query_bits bits per dimension (uniform between
// their min and max); the code-query products are then exact integer sums of popcounts
// (AND of a code plane with a query bit plane), identical on every CPU.
//
// Layout of one encoded row (row_bytes() bytes), as every RaBitQ index stores it:
//   planes  (B, D / 8) uint8: plane 0 = sign bits b, plane 1 + j = bit j of e_i = u_i mod 2^(B-1);
//           dimension i is bit (i % 8) of byte i / 8 (numpy.packbits(bitorder="little"))
//   factors (F,) float32 little-endian, F = 3 (B = 1) or 5:
//           [0] ||r||^2
//           [1] scale of the 1-bit level  = norm / <xbar1, o>   (xbar1 = b - 1/2)
//           [2] error of the 1-bit level  = norm * sqrt(1 - cos1^2) / (cos1 * sqrt(D - 1))
//           [3] scale of the full level, [4] error of the full level (B > 1)
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "index/scorer.hpp"

namespace simdex {

struct KernelTable;

// A random orthogonal map of R^D (D a multiple of 64), applied to zero-padded vectors.
//   hadamard: kRounds rounds of  y <- H_h (s_r * y)  where s_r (D,) are random signs and H_h
//             the normalised Walsh-Hadamard transform of size h = the largest power of two
//             <= D, applied to coordinates [0, h) on even rounds and [D - h, D) on odd ones
//             (D log D per vector; with D a power of two every round covers everything);
//   dense:    y <- M y with M (D, D) row-major orthogonal (a Haar-random matrix; D^2).
class Rotation {
   public:
    static constexpr std::size_t kRounds = 4;
    enum class Kind : int { hadamard = 0, dense = 1 };

    Rotation() = default;
    // params: hadamard: (kRounds, D) float32 of +-1;  dense: (D, D) float32.
    Rotation(Kind kind, std::size_t dim, const float* params);

    Kind kind() const { return kind_; }
    std::size_t dim() const { return dim_; }
    std::size_t padded_dim() const { return padded_; }
    std::size_t param_count() const { return params_.size(); }
    const float* params() const { return params_.data(); }

    // x (dim,) -> out (D,), in double precision (the Hadamard transforms with kernels.fwht_f64:
    // the same doubles on every tier).
    void apply(const KernelTable& kernels, const float* x, double* out) const;
    // y (D,) -> out (dim,): the inverse map (transpose), dropping the padding.
    void invert(const KernelTable& kernels, const double* y, double* out) const;

   private:
    Kind kind_ = Kind::hadamard;
    std::size_t dim_ = 0, padded_ = 0, half_ = 0;  // half_ = h (hadamard)
    std::vector<float> params_;
};

inline std::size_t rabitq_padded_dim(std::size_t dim) { return (dim + 63) / 64 * 64; }

// A query prepared for one centre: rotated, quantised, with its bit planes.
struct RaBitQQuery {
    std::vector<double> rotated;        // (D,) R (q - c) for l2, R q for ip / cosine
    std::vector<std::uint64_t> planes;  // (query_bits, D / 64): bit k of the quantised q_i
    double constant = 0;                // l2: ||q - c||^2;  ip: 1 - <c, q>
    double norm = 0;                    // ||rotated||
    double lo = 0, delta = 0;           // q_i ~= lo + delta * qint_i
    double sum = 0;                     // sum_i (lo + delta * qint_i)
    bool l2 = true;
};

// One estimate: distance, and its error at eps0 = 1 (multiply by eps0 for the bound).
struct RaBitQEstimate {
    float distance;
    float error;
};

// Query bit planes from quantised levels (D a multiple of 64, levels < 2^bits <= 256):
// bit i % 64 of planes[k * (D / 64) + i / 64] = bit k of levels[i].
void level_planes(const std::uint8_t* levels, std::size_t D, int bits, std::uint64_t* planes);

// The integer product of a code plane (words x 64 bits, as bytes) with quantised query levels
// given as their bit planes: count = popcount(plane), dot = sum_k 2^k popcount(plane & planes_k).
inline void plane_counts(const std::uint8_t* plane, const std::uint64_t* planes, std::size_t words, int bits,
                         std::uint64_t& count, std::uint64_t& dot) {
    count = dot = 0;
    for (std::size_t w = 0; w < words; ++w) {
        std::uint64_t word;
        std::memcpy(&word, plane + 8 * w, 8);
        count += static_cast<std::uint64_t>(__builtin_popcountll(word));
        for (int k = 0; k < bits; ++k)
            dot += static_cast<std::uint64_t>(__builtin_popcountll(word & planes[static_cast<std::size_t>(k) * words + w]))
                   << k;
    }
}

class RaBitQ {
   public:
    RaBitQ() = default;
    // bits: 1..8 bits per dimension;  query_bits: 1..8.
    RaBitQ(std::size_t dim, int bits, int query_bits, const Rotation& rotation);

    std::size_t dim() const { return dim_; }
    std::size_t padded_dim() const { return padded_; }
    int bits() const { return bits_; }
    int query_bits() const { return query_bits_; }
    const Rotation& rotation() const { return rotation_; }
    std::size_t words() const { return padded_ / 64; }           // 64-bit words per plane
    std::size_t plane_bytes() const { return padded_ / 8; }
    std::size_t code_bytes() const { return bits_ * plane_bytes(); }
    std::size_t factor_count() const { return bits_ == 1 ? 3 : 5; }
    std::size_t row_bytes() const { return code_bytes() + 4 * factor_count(); }

    // x (dim,), centre (dim,) or nullptr (= 0) -> row (row_bytes(),)
    void encode(const KernelTable& kernels, const float* x, const float* centre, std::uint8_t* row) const;
    // Encode from an already rotated residual y = R (x - c) (D,), e.g. for IVF lists.
    void encode_rotated(const double* y, std::uint8_t* row) const;
    // row -> out (dim,): c + norm * R^T (xbar / ||xbar||), the full-level reconstruction.
    void decode(const KernelTable& kernels, const std::uint8_t* row, const float* centre, float* out) const;

    // q (dim,) against centre (dim,) or nullptr; metric l2, ip or cosine (= ip on unit vectors).
    void prepare(const KernelTable& kernels, const float* q, const float* centre, Metric metric,
                 RaBitQQuery& out) const;
    // From R q and R c (both (D,); rotated_centre may be nullptr = 0) and the metric constant
    // computed by the caller. planes = false skips the query bit planes (only rotated, norm
    // and constant are then set: for callers that score the sign plane with their own tables).
    void prepare_rotated(const double* rotated_query, const double* rotated_centre, double constant,
                         bool l2, RaBitQQuery& out, bool planes = true) const;

    // The 1-bit estimate (sign plane only) and the full B-bit estimate of one row.
    RaBitQEstimate estimate_1bit(const RaBitQQuery& q, const std::uint8_t* row) const;
    RaBitQEstimate estimate(const RaBitQQuery& q, const std::uint8_t* row) const;
    // Full estimate from the parts of a row kept apart (indexes whose sign planes live in a
    // fast-scan layout): sign (D / 8,) bytes, ex planes (B - 1, D / 8) bytes (unused for
    // B = 1), factors (factor_count(),) float32.
    RaBitQEstimate estimate_parts(const RaBitQQuery& q, const std::uint8_t* sign, const std::uint8_t* ex,
                                  const float* factors) const;
    // Distance estimates without the error term (graph walks need no bound): the 1-bit level
    // (sign plane and factors [1]; rows of any B) or the full level.
    float distance_1bit(const RaBitQQuery& q, const std::uint8_t* row) const;
    // The same from its parts (fast-scan walks): dot = sum_i b_i qint_i over the sign bits b
    // with q_i ~= lo + delta * qint_i, count = popcount(b), norm2 / scale = factors [0] / [1].
    float distance_1bit_parts(const RaBitQQuery& q, double dot, double count, float norm2, float scale) const;
    float distance(const RaBitQQuery& q, const std::uint8_t* row) const;
    // rows (n, row_bytes()) -> distances (n,), errors (n,) (either may be nullptr), full level.
    void estimate_rows(const RaBitQQuery& q, const std::uint8_t* rows, std::size_t n,
                       float* distances, float* errors) const;

    // The factors of a row (row + code_bytes(), maybe unaligned: copy them out to use them).
    void factors_of(const std::uint8_t* row, float* out) const;

   private:
    double plane_product(const RaBitQQuery& q, const std::uint8_t* plane) const;

    std::size_t dim_ = 0, padded_ = 0;
    int bits_ = 1, query_bits_ = 4;
    Rotation rotation_;
};

}  // namespace simdex
