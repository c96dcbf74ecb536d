// Dense kernels, tier icelake: the int8 x uint8 dot product with AVX-512 VNNI; every other
// dense kernel is inherited from dense/skylake.cpp.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

// int8 x uint8 dot with VNNI: vpdpbusd multiplies 64 uint8 x int8 pairs and adds each
// group of four into an int32 lane (exact); masked loads for the tail.
std::int32_t dot_s8u8(const std::int8_t* q, const std::uint8_t* x, std::size_t d) {
    __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
    std::size_t j = 0;
    for (; j + 128 <= d; j += 128) {
        sum0 = _mm512_dpbusd_epi32(sum0, _mm512_loadu_si512(x + j), _mm512_loadu_si512(q + j));
        sum1 = _mm512_dpbusd_epi32(sum1, _mm512_loadu_si512(x + j + 64), _mm512_loadu_si512(q + j + 64));
    }
    for (; j < d; j += 64) {
        __mmask64 m = d - j >= 64 ? ~0ull : _bzhi_u64(~0ull, static_cast<unsigned>(d - j));
        sum0 = _mm512_dpbusd_epi32(sum0, _mm512_maskz_loadu_epi8(m, x + j), _mm512_maskz_loadu_epi8(m, q + j));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(sum0, sum1));
}

}  // namespace

void register_dense_icelake(KernelTable& t) { t.dot_s8u8 = dot_s8u8; }

}  // namespace simdex
