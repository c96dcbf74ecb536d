"""Coverage-guided fuzz target (atheris / libFuzzer) for loading index files.

    python tests/fuzz/fuzz_load.py --target hnsw --mode struct --findings DIR -- CORPUS SEEDS [libFuzzer flags]
    python tests/fuzz/fuzz_load.py --target hnsw --replay FILE...    # re-run saved inputs, no atheris

Replay also runs a whole corpus under the sanitized build (ci/fuzz.sh with FUZZ_ASAN=1): the
coverage the fuzzers reached, checked for memory errors the plain build does not notice.

An input must either load or raise ValueError. After a successful load the index is used
(search, filtered search, remove, add, search; sdxfile.exercise) and every answer is checked
against the contract. A finding is anything else: another exception type at load, any
exception or broken contract while using what loaded, a crash (signal), a hang or an OOM.

Modes
  struct  (default) a structure-aware mutator: the input is taken apart (sdxfile.parse), its
          JSON header fields, array entries or array contents are changed, and it is put back
          together with correct offsets and CRC-32s, so mutations reach the semantic checks;
          one input in eight gets libFuzzer's own byte mutation instead.
  bytes   libFuzzer's byte mutation only (mostly stopped by the checksums: the format layer).

Python-level findings are saved (deduplicated by type, message and place) under
--findings/<target>/ as .sdx + .txt and fuzzing goes on; a crash ends the run and libFuzzer
saves the input (-artifact_prefix). ci/fuzz.sh drives this per target.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import re
import sys
import tempfile
import traceback
import warnings
import zlib

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sdxfile

ARGS: argparse.Namespace
REPLAY_FINDINGS: list[str] = []
SX = None  # simdex, imported (instrumented) in main
TMP = pathlib.Path(tempfile.gettempdir())


def load(data: bytes):
    """Load one input the way a user would, by one of three paths chosen from the input's
    hash (deterministic, so a saved input replays the same way): bytes (pickle path), a file,
    or a memory-mapped file."""
    how = zlib.crc32(data) % 4
    if how < 2:
        return SX._format.loads(data)
    path = TMP / f"simdex-fuzz-{os.getpid()}.sdx"
    path.write_bytes(data)
    return SX.load(path, mmap=how == 3)


def one_input(data: bytes) -> None:
    try:
        index = load(data)
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - any other type is the finding
        finding(data, "load", exc)
        return
    try:
        sdxfile.exercise(index)
    except Exception as exc:  # noqa: BLE001
        finding(data, "use", exc)


def signature(stage: str, exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "simdex" in f.filename or "sdxfile" in f.filename]
    place = f"{pathlib.Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    message = re.sub(r"'[^']*'", "'*'", str(exc).split("[")[0])  # one finding for every type named
    message = re.sub(r"[-+]?\d[\d.e+-]*|nan|inf", "#", message)[:80]
    return f"{stage} {type(exc).__name__} at {place}: {message}"


def finding(data: bytes, stage: str, exc: BaseException) -> None:
    sig = signature(stage, exc)
    if ARGS.stop_on_finding:
        raise exc
    if ARGS.replay:
        REPLAY_FINDINGS.append(sig)
        traceback.print_exception(exc)
        print(f"FINDING {sig}", flush=True)
        return
    key = hashlib.sha1(sig.encode()).hexdigest()[:12]
    out = pathlib.Path(ARGS.findings) / ARGS.target
    out.mkdir(parents=True, exist_ok=True)
    if not (out / f"{key}.sdx").exists():
        (out / f"{key}.sdx").write_bytes(data)
        (out / f"{key}.txt").write_text(sig + "\n\n" + "".join(traceback.format_exception(exc)))
        print(f"FINDING {ARGS.target}: {sig}", file=sys.stderr, flush=True)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    if ARGS.mode == "bytes" or seed % 8 == 0:
        return atheris.Mutate(data, max_size)
    try:
        parsed = sdxfile.parse(data)
    except Exception:  # noqa: BLE001 - not a well-formed file (an earlier byte mutation)
        return atheris.Mutate(data, max_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mutated, override = sdxfile.StructureMutator(seed).mutate(parsed)
    try:
        out = mutated.to_bytes(dtype_override=override)
    except (TypeError, ValueError, OverflowError):  # e.g. a header value json cannot write
        return atheris.Mutate(data, max_size)
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def main() -> None:
    global ARGS, SX
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="label of the findings folder (index kind)")
    parser.add_argument("--mode", choices=("struct", "bytes"), default="struct")
    parser.add_argument("--findings", default="build-fuzz/findings")
    parser.add_argument("--stop-on-finding", action="store_true", help="raise (libFuzzer saves a crash file)")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs once, without atheris")
    ARGS, rest = parser.parse_known_args()
    warnings.simplefilter("ignore")
    if ARGS.replay:
        import simdex

        SX = simdex
        for path in ARGS.replay:
            print(path, flush=True)
            one_input(pathlib.Path(path).read_bytes())
        if REPLAY_FINDINGS:
            print(f"replay: {len(REPLAY_FINDINGS)} of {len(ARGS.replay)} inputs are findings")
            sys.exit(1)
        print("replay: every input loaded or raised ValueError, and what loaded kept the contract")
        return

    import atheris

    with atheris.instrument_imports(include=["simdex"]):
        import simdex
    SX = simdex
    atheris.Setup([sys.argv[0]] + rest, one_input,
                  custom_mutator=mutate if ARGS.mode == "struct" else None)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
