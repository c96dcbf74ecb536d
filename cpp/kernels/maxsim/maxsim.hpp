// Kernel family 'maxsim': the inner loop of Chamfer / MaxSim (late-interaction) similarity.
// Function pointers held in KernelTable::maxsim (see kernels.hpp); one file per ISA beside this.
//
//     Chamfer(Q, P) = sum_{q in Q} max_{p in P} <q, p>
//
// The query's tokens are packed once per query into a *panel*: query tokens run along the
// SIMD lanes, dimensions along the rows, so a block of `lanes` query tokens is scored against
// one document token with one broadcast of each of its elements and one FMA per dimension:
//     Layout: panel (blocks, d, lanes) float32, panel[b, j, l] = q[b * lanes + l, j]
//             (zero for b * lanes + l >= tq)
// The kernel keeps `rows` document tokens' accumulators in registers, folds them into a
// running per-lane maximum and never writes a (tq, n) similarity matrix anywhere: the row max
// is fused into the GEMM tile. Document tokens are float32 rows; float16 and int8 tokens are
// widened into a small float32 scratch first (widen_*), a cost of O(n d) against O(tq n d).
//
// Precision: each <q_i, x_r> is one float32 sum over j in increasing order (FMA where the ISA
// has it), so levels agree to ~ d * eps * sum_j |q_ij x_rj|. No -ffast-math: NaN propagates
// through the sums (inputs are checked finite before they get here).
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

struct MaxSimKernels {
    // Query tokens per panel block for this ISA (4 scalar / NEON, 8 AVX2, 16 AVX-512).
    std::size_t lanes = 4;

    // panel: (blocks, d, lanes) float32 (above);  x: (n, d) float32 rows, row-major
    // best:  (blocks * lanes,) float32, updated in place:
    //        best[i] = max(best[i], max_{r < n} <q_i, x_r>)
    void (*maxsim_f32)(const float* panel, std::size_t blocks, const float* x, std::size_t n,
                       std::size_t d, float* best) = nullptr;

    // IEEE half -> float32 (exact), count values.
    void (*widen_f16)(const std::uint16_t* x, std::size_t count, float* out) = nullptr;
    // uint8 codes -> float32 values 0..255 (the caller folds int8 ranges into the query).
    void (*widen_u8)(const std::uint8_t* x, std::size_t count, float* out) = nullptr;

    // The MUVERA projection of a set's tokens (index/multivector.cpp):
    //     y (n, cols) = x (n, d) @ w (d, cols), all row-major float32
    // Each y[t, c] = (((0 + x[t,0] w[0,c]) + x[t,1] w[1,c]) + ...) in increasing j, every product
    // rounded to float32 before it is added (never fused): the result is bitwise the same at
    // every level and for any tiling, so encodings do not depend on the CPU.
    void (*project_f32)(const float* x, std::size_t n, std::size_t d, const float* w, std::size_t cols,
                        float* y) = nullptr;
};

}  // namespace simdex
