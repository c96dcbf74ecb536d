#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define SIMDEX_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace simdex {
namespace {

constexpr std::size_t kTierCount = 0
#define SIMDEX_TIER(name, parent, features, built) +1
#include "tiers.inc"
#undef SIMDEX_TIER
    ;

std::vector<TierInfo> make_tier_table() {
    std::vector<TierInfo> table;
    auto add = [&](SimdLevel tier, const char* name, const char* parent, const char* own, bool built) {
        TierInfo info{tier, name, SimdLevel::scalar, {}, built};
        for (const TierInfo& t : table)
            if (t.name == parent) {
                info.parent = t.tier;
                info.features = t.features;
            }
        std::istringstream words(own);
        for (std::string w; words >> w;) info.features.push_back(w);
        table.push_back(info);
    };
#define SIMDEX_TIER(name, parent, features, built) add(SimdLevel::name, #name, parent, features, built);
#include "tiers.inc"
#undef SIMDEX_TIER
    return table;
}

std::size_t depth(SimdLevel tier) {
    std::size_t n = 0;
    for (SimdLevel t = tier; t != SimdLevel::scalar; t = tier_table()[static_cast<int>(t)].parent) ++n;
    return n;
}

// ---- CPU detection -------------------------------------------------------------------------

#ifdef SIMDEX_X86
std::uint64_t read_xcr0() {
    std::uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<std::uint64_t>(edx) << 32) | eax;
}
#endif

// Feature name -> present (and enabled by the OS), names as the -m<feature> compiler flags.
std::map<std::string, bool> detect() {
    std::map<std::string, bool> f;
#ifdef SIMDEX_X86
    const char* x86[] = {"sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi", "bmi2",
                         "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl",
                         "avx512vnni", "avx512vpopcntdq", "avx512vbmi", "avx512vbmi2",
                         "avx512bitalg", "avx512bf16", "avx512fp16"};
    for (const char* name : x86) f[name] = false;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f["sse4.2"] = c & (1u << 20);
    f["popcnt"] = c & (1u << 23);
    f["fma"] = c & (1u << 12);
    f["f16c"] = c & (1u << 29);
    f["avx"] = c & (1u << 28);
    bool os_avx = false, os_avx512 = false;
    if (c & (1u << 27)) {  // OSXSAVE: XGETBV tells which register state the OS saves
        std::uint64_t xcr0 = read_xcr0();
        os_avx = (xcr0 & 0x6) == 0x6;                    // SSE + AVX state
        os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;     // opmask + ZMM state
    }
    if (__get_cpuid_max(0, nullptr) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f["bmi"] = b & (1u << 3);
        f["avx2"] = b & (1u << 5);
        f["bmi2"] = b & (1u << 8);
        f["avx512f"] = b & (1u << 16);
        f["avx512dq"] = b & (1u << 17);
        f["avx512cd"] = b & (1u << 28);
        f["avx512bw"] = b & (1u << 30);
        f["avx512vl"] = b & (1u << 31);
        f["avx512vbmi"] = c & (1u << 1);
        f["avx512vbmi2"] = c & (1u << 6);
        f["avx512vnni"] = c & (1u << 11);
        f["avx512bitalg"] = c & (1u << 12);
        f["avx512vpopcntdq"] = c & (1u << 14);
        f["avx512fp16"] = d & (1u << 23);
        __cpuid_count(7, 1, a, b, c, d);
        f["avx512bf16"] = a & (1u << 5);
    }
    for (auto& [name, on] : f) {
        bool needs_avx512_state = name.rfind("avx512", 0) == 0;
        bool needs_avx_state = needs_avx512_state || name == "avx" || name == "avx2" ||
                               name == "fma" || name == "f16c";
        if ((needs_avx_state && !os_avx) || (needs_avx512_state && !os_avx512)) on = false;
    }
#elif defined(__aarch64__)
    f["neon"] = true;  // part of armv8-a
#if defined(__linux__)
    unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    f["dotprod"] = hwcap & (1ul << 20);  // HWCAP_ASIMDDP
    f["sve"] = hwcap & (1ul << 22);      // HWCAP_SVE
    f["i8mm"] = hwcap2 & (1ul << 13);    // HWCAP2_I8MM
    f["bf16"] = hwcap2 & (1ul << 14);    // HWCAP2_BF16
#endif
#endif
    return f;
}

const std::map<std::string, bool>& features() {
    static const std::map<std::string, bool> f = detect();
    return f;
}

SimdLevel compute_detected() {
    std::set<std::string> present;
    for (const auto& [name, on] : features())
        if (on) present.insert(name);
    SimdLevel tier = select_tier(present);
    while (!tier_table()[static_cast<int>(tier)].built) tier = tier_table()[static_cast<int>(tier)].parent;
    return tier;
}

std::string tier_names() {
    std::string names;
    for (const TierInfo& t : tier_table()) names += (names.empty() ? "" : ", ") + t.name;
    return names + " (aliases avx2, avx512)";
}

std::string g_env_warning;

SimdLevel initial_level() {
    SimdLevel detected = detected_level();
    const char* env = std::getenv("SIMDEX_SIMD");
    if (env == nullptr || *env == '\0') return detected;
    SimdLevel wanted;
    try {
        wanted = parse_level(env);
    } catch (const std::invalid_argument&) {
        g_env_warning = std::string("SIMDEX_SIMD='") + env + "' is not one of " + tier_names() +
                        "; ignored, using " + level_name(detected);
        return detected;
    }
    if (!tier_within(wanted, detected)) {
        g_env_warning = std::string("SIMDEX_SIMD='") + env + "' (" + level_name(wanted) +
                        ") is not a tier this CPU runs (" + level_name(detected) +
                        "); SIMDEX_SIMD may only lower the tier; using " + level_name(detected);
        return detected;
    }
    return wanted;
}

std::atomic<int>& active_storage() {
    static std::atomic<int> level{static_cast<int>(initial_level())};
    return level;
}

KernelTable build_table(SimdLevel level) {
    KernelTable table;
    table.level = level;
    // kernel_registry.inc lists the files lowest tier first, so a tier's kernels overwrite
    // its ancestors'
#define SIMDEX_REGISTER(op, tier) \
    if (tier_within(SimdLevel::tier, level)) register_##op##_##tier(table);
#include "kernel_registry.inc"
#undef SIMDEX_REGISTER
    return table;
}

}  // namespace

const std::vector<TierInfo>& tier_table() {
    static const std::vector<TierInfo> table = make_tier_table();
    return table;
}

SimdLevel select_tier(const std::set<std::string>& features) {
    SimdLevel best = SimdLevel::scalar;
    for (const TierInfo& t : tier_table()) {
        bool has_all = true;
        for (const std::string& f : t.features) has_all = has_all && features.count(f) > 0;
        if (has_all && depth(t.tier) > depth(best)) best = t.tier;
    }
    return best;
}

std::vector<std::string> missing_features(SimdLevel tier, const std::set<std::string>& features) {
    std::vector<std::string> missing;
    for (const std::string& f : tier_table()[static_cast<int>(tier)].features)
        if (!features.count(f)) missing.push_back(f);
    return missing;
}

bool tier_within(SimdLevel tier, SimdLevel top) {
    for (SimdLevel t = top;; t = tier_table()[static_cast<int>(t)].parent) {
        if (t == tier) return true;
        if (t == SimdLevel::scalar) return false;
    }
}

SimdLevel detected_level() {
    static const SimdLevel level = compute_detected();
    return level;
}

SimdLevel active_level() { return static_cast<SimdLevel>(active_storage().load()); }

void set_active_level(SimdLevel level) {
    SimdLevel detected = detected_level();
    if (!tier_within(level, detected))
        throw std::invalid_argument(std::string("SIMD tier '") + level_name(level) +
                                    "' is not one this CPU runs (detected: " +
                                    level_name(detected) + ")");
    active_storage().store(static_cast<int>(level));
}

const KernelTable& kernels_for(SimdLevel level) {
    static std::once_flag once[kTierCount];
    static KernelTable tables[kTierCount];
    int i = static_cast<int>(level);
    std::call_once(once[i], [&] { tables[i] = build_table(level); });
    return tables[i];
}

const char* level_name(SimdLevel level) {
    return tier_table()[static_cast<int>(level)].name.c_str();
}

SimdLevel parse_level(const std::string& name) {
    for (const TierInfo& t : tier_table())
        if (t.name == name) return t.tier;
    if (name == "avx2") return SimdLevel::haswell;
    if (name == "avx512") {
        SimdLevel detected = detected_level();
        return tier_within(SimdLevel::skylake, detected) ? detected : SimdLevel::skylake;
    }
    throw std::invalid_argument("unknown SIMD tier '" + name + "'; expected one of " + tier_names());
}

std::map<std::string, bool> cpu_features() { return features(); }

std::string env_warning() {
    active_level();  // make sure the variable was read
    return g_env_warning;
}

}  // namespace simdex
