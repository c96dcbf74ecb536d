// The one dispatch point: CPU detection (CPUID + XGETBV), tier selection, per-tier kernel tables.
//
// Tiers are named after what they require (CMakeLists.txt SIMDEX_TIERS, generated tiers.inc):
//   scalar -> haswell (AVX2, FMA, F16C, BMI, BMI2, POPCNT) -> skylake (+ AVX-512 F/CD/BW/DQ/VL)
//          -> icelake (+ VNNI, VPOPCNTDQ);   scalar -> neon.
// A tier requires its parent's features plus its own; a CPU runs the deepest tier whose
// features it has (select_tier, a pure function of the feature set, tested with the feature
// sets of CPUs that CI never sees).
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"

namespace simdex {

struct TierInfo {
    SimdLevel tier;
    std::string name;
    SimdLevel parent;                   // scalar's parent is scalar
    std::vector<std::string> features;  // required: every feature, the ancestors' included
    bool built;                         // this build compiled the tier (its architecture)
};
// Every tier, in SIMDEX_TIERS order (also the tiers this build has no files for).
const std::vector<TierInfo>& tier_table();
// The deepest tier whose required features are all in `features` (names as cpu_features()).
SimdLevel select_tier(const std::set<std::string>& features);
// Required features of `tier` that `features` lacks, in the tier's order.
std::vector<std::string> missing_features(SimdLevel tier, const std::set<std::string>& features);
// True when `tier` is `top` or one of its ancestors (what `top`'s CPU can also run).
bool tier_within(SimdLevel tier, SimdLevel top);

// Tier of this CPU and OS, capped at the deepest tier this build has kernel files for.
SimdLevel detected_level();
// Tier in use: detected, lowered by SIMDEX_SIMD (read once) or by set_active_level.
SimdLevel active_level();
// Lower (or restore up to the detected tier) the active tier; throws std::invalid_argument
// for a tier this CPU cannot run.
void set_active_level(SimdLevel level);
// Table for a given tier (built on first use, then read-only).
const KernelTable& kernels_for(SimdLevel level);
inline const KernelTable& active_kernels() { return kernels_for(active_level()); }

const char* level_name(SimdLevel level);
// A tier name, or an alias: "avx2" = haswell, "avx512" = the deepest AVX-512 tier this CPU
// runs (skylake when it runs none). Throws std::invalid_argument for anything else.
SimdLevel parse_level(const std::string& name);
std::map<std::string, bool> cpu_features();
// Warning produced while reading SIMDEX_SIMD (empty if none); reported by Python once.
std::string env_warning();

}  // namespace simdex
