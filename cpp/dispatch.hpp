// The one dispatch point: CPU detection (CPUID + XGETBV) and the per-level kernel tables.
#pragma once
#include <map>
#include <string>

#include "kernels/kernels.hpp"

namespace simdex {

// Highest level this CPU and OS support (detected once).
SimdLevel detected_level();
// Level in use: detected, lowered by SIMDEX_SIMD (read once) or by set_active_level.
SimdLevel active_level();
// Lower (or restore up to the detected level) the active level; throws std::invalid_argument
// for a level above what the CPU supports.
void set_active_level(SimdLevel level);
// Table for a given level (built on first use, then read-only).
const KernelTable& kernels_for(SimdLevel level);
inline const KernelTable& active_kernels() { return kernels_for(active_level()); }

const char* level_name(SimdLevel level);
SimdLevel parse_level(const std::string& name);  // throws std::invalid_argument
std::map<std::string, bool> cpu_features();
// Warning produced while reading SIMDEX_SIMD (empty if none); reported by Python once.
std::string env_warning();

}  // namespace simdex
