"""CPU tiers: selection from a feature set (for CPUs CI never sees), detection, aliases, info."""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess
import sys

import pytest

import simdex as sx
from simdex import _core, kernels
from simdex.kernels import TIERS, available_levels, force_simd, select_tier, tier_chain

HASWELL = {"sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi", "bmi2"}
SKYLAKE_SP = HASWELL | {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
CASCADE_LAKE = SKYLAKE_SP | {"avx512vnni"}
ICE_LAKE_SP = CASCADE_LAKE | {"avx512vpopcntdq", "avx512vbmi", "avx512vbmi2", "avx512bitalg"}
SAPPHIRE_RAPIDS = ICE_LAKE_SP | {"avx512bf16", "avx512fp16"}
ZEN3 = HASWELL
ZEN4 = ICE_LAKE_SP | {"avx512bf16"}  # no AVX512-FP16
GRAVITON2 = {"neon", "dotprod"}  # Neoverse N1
GRAVITON3 = {"neon", "dotprod", "sve", "bf16", "i8mm"}  # Neoverse V1

CPUS = [  # (cpu, features, tier, features missing for the next tier up or None at the top)
    ("Haswell", HASWELL, "haswell", ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]),
    ("Skylake-SP", SKYLAKE_SP, "skylake", ["avx512vnni", "avx512vpopcntdq"]),
    ("Cascade Lake", CASCADE_LAKE, "skylake", ["avx512vpopcntdq"]),
    ("Ice Lake", ICE_LAKE_SP, "icelake", None),
    ("Sapphire Rapids", SAPPHIRE_RAPIDS, "icelake", None),  # no kernel uses BF16 / FP16 yet
    ("Zen 3", ZEN3, "haswell", ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]),
    ("Zen 4", ZEN4, "icelake", None),
    ("Graviton 2", GRAVITON2, "neon", None),
    ("Graviton 3", GRAVITON3, "neon", None),
]


@pytest.mark.parametrize("cpu, features, tier, missing", CPUS, ids=[c[0] for c in CPUS])
def test_select_tier_for_known_cpus(cpu, features, tier, missing):
    assert select_tier(features) == tier
    assert select_tier({f: True for f in features} | {"avx512er": False}) == tier
    children = [t.name for t in TIERS.values() if t.parent == tier and t.name != tier]
    if missing is None:
        assert not children, f"{cpu}: {tier} is not the top of its chain"
    else:
        assert [_core.missing_features(child, features) for child in children] == [missing]


@pytest.mark.parametrize("features, tier", [
    (set(), "scalar"),
    ({"sse4.2", "popcnt"}, "scalar"),                        # x86-64-v2 only
    (HASWELL - {"fma"}, "scalar"),                           # every haswell feature is required
    (HASWELL - {"bmi2"}, "scalar"),
    (SKYLAKE_SP - {"avx512vl"}, "haswell"),
    (HASWELL | {"avx512f", "avx512cd", "avx512er", "avx512pf"}, "haswell"),  # Knights Landing
    (CASCADE_LAKE | {"avx512bf16"}, "skylake"),              # Cooper Lake: no VPOPCNTDQ
    ({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}, "scalar"),  # no AVX2: broken set
])
def test_select_tier_needs_every_feature_of_the_chain(features, tier):
    assert select_tier(features) == tier


def test_tier_table_is_a_tree_of_growing_requirements():
    assert list(TIERS)[0] == "scalar" and TIERS["scalar"].features == ()
    for tier in TIERS.values():
        if tier.name == "scalar":
            continue
        parent = TIERS[tier.parent]
        assert list(TIERS).index(parent.name) < list(TIERS).index(tier.name)
        assert set(parent.features) < set(tier.features), tier
        assert select_tier(tier.features) == tier.name  # its own features select it
    x86 = {t for t in TIERS if t not in ("scalar", "neon")}
    assert {t for t in x86 if TIERS[t].built} in (x86, set())
    assert TIERS["neon"].built == (platform.machine().lower() in ("aarch64", "arm64"))


def test_detected_tier_is_the_selection_of_the_detected_features():
    detected = _core.detected_level()
    assert detected == select_tier(sx.cpu_features())
    assert available_levels() == tier_chain(_core.active_level()) or os.environ.get("SIMDEX_SIMD")
    assert tier_chain("icelake") == ["scalar", "haswell", "skylake", "icelake"]
    assert tier_chain("neon") == ["scalar", "neon"]
    with pytest.raises(ValueError, match="tier must be one of"):
        tier_chain("avx9")


LINUX_FLAGS = {"sse4_2": "sse4.2", "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma",
               "f16c": "f16c", "bmi1": "bmi", "bmi2": "bmi2", "avx512f": "avx512f",
               "avx512cd": "avx512cd", "avx512bw": "avx512bw", "avx512dq": "avx512dq",
               "avx512vl": "avx512vl", "avx512_vnni": "avx512vnni",
               "avx512_vpopcntdq": "avx512vpopcntdq", "avx512vbmi": "avx512vbmi",
               "avx512_vbmi2": "avx512vbmi2", "avx512_bitalg": "avx512bitalg",
               "avx512_bf16": "avx512bf16", "avx512_fp16": "avx512fp16"}


@pytest.mark.skipif(not (pathlib.Path("/proc/cpuinfo").exists() and platform.machine() == "x86_64"),
                    reason="x86-64 Linux only")
def test_detection_agrees_with_the_kernel():
    """CPUID + XGETBV read the same features as Linux reports in /proc/cpuinfo."""
    flags = set()
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    ours = sx.cpu_features()
    for linux, name in LINUX_FLAGS.items():
        assert ours[name] == (linux in flags), (name, ours[name])


def test_force_simd_every_tier_and_aliases():
    for tier in available_levels():
        with force_simd(tier) as active:
            assert active == tier == sx.simd_level()
    runnable = tier_chain(_core.detected_level())  # force_simd may go back up to detected
    if "haswell" in runnable:
        with force_simd("avx2") as active:
            assert active == "haswell"
    if "skylake" in runnable:
        with force_simd("avx512") as active:
            assert active in ("skylake", "icelake")
    else:
        with pytest.raises(ValueError, match="not one this CPU runs"):
            with force_simd("avx512"):
                pass
    with pytest.raises(ValueError, match="unknown SIMD tier 'sse9'.*haswell.*avx512"):
        with force_simd("sse9"):
            pass
    with pytest.raises(TypeError):
        with force_simd(2):  # type: ignore[arg-type]
            pass


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code.split()] if code.startswith("-m") else
                          [sys.executable, "-c", code], env=dict(os.environ, **env),
                          capture_output=True, text=True)


@pytest.mark.skipif("haswell" not in tier_chain(_core.detected_level()), reason="needs an AVX2 CPU")
def test_env_alias_avx2_is_haswell():
    r = run("import simdex; print(simdex.simd_level())", SIMDEX_SIMD="avx2")
    assert r.returncode == 0 and r.stdout.strip() == "haswell" and not r.stderr


def test_info_names_the_tier_and_what_the_next_one_needs():
    r = run("-m simdex info", SIMDEX_SIMD="")
    assert r.returncode == 0, r.stderr
    detected = _core.detected_level()
    tier_line = next(line for line in r.stdout.splitlines() if line.startswith("tier"))
    assert detected in tier_line
    next_line = next(line for line in r.stdout.splitlines() if line.startswith("next tier"))
    children = [t.name for t in TIERS.values() if t.parent == detected and t.name != detected]
    missing = {c: _core.missing_features(c, {f for f, on in sx.cpu_features().items() if on})
               for c in children}
    if not children:
        assert "none" in next_line
    else:
        best = min(missing, key=lambda c: len(missing[c]))
        assert best in next_line and all(f in next_line for f in missing[best])
    r = run("-m simdex info", SIMDEX_SIMD="scalar")
    assert "scalar" in next(line for line in r.stdout.splitlines() if line.startswith("tier"))
    assert f"detected {detected}" in r.stdout
