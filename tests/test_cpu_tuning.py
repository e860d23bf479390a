"""512-bit numba code on Intel AVX-512 server cores (dejavid/runtime/cpu_tuning.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dejavid.runtime import cpu_tuning

ROOT = Path(__file__).resolve().parents[1]
AVX512 = "+64bit,+avx,+avx2,+avx512f,+avx512bw,+fma"
AVX2 = "+64bit,+avx,+avx2,-avx512f,+fma"


def _host_has_avx512() -> bool:
    try:
        import llvmlite.binding as llb
        return bool(llb.get_host_cpu_features().get("avx512f"))
    except (ImportError, RuntimeError):
        return False


def test_auto_prefers_512_bit_on_listed_cores_only():
    got = cpu_tuning.numba_features({}, "emeraldrapids", AVX512)
    assert got == AVX512 + ",-prefer-256-bit"
    assert cpu_tuning.numba_features({}, "sapphirerapids", AVX512).endswith(",-prefer-256-bit")
    # Older Intel cores (clock drops under 512-bit code) and AMD keep LLVM's default.
    assert cpu_tuning.numba_features({}, "skylake-avx512", AVX512) is None
    assert cpu_tuning.numba_features({}, "znver4", AVX512) is None
    assert cpu_tuning.numba_features({"DEJAVID_NUMBA_512": "auto"}, "znver4", AVX512) is None


def test_forced_on_needs_avx512_and_forced_off_never_sets():
    assert cpu_tuning.numba_features({"DEJAVID_NUMBA_512": "1"}, "znver4", AVX512).endswith(
        ",-prefer-256-bit")
    assert cpu_tuning.numba_features({"DEJAVID_NUMBA_512": "1"}, "znver3", AVX2) is None
    assert cpu_tuning.numba_features({}, "emeraldrapids", AVX2) is None
    assert cpu_tuning.numba_features({"DEJAVID_NUMBA_512": "0"}, "emeraldrapids", AVX512) is None


def test_user_numba_settings_are_left_alone():
    for env in ({"NUMBA_CPU_FEATURES": "+avx2"}, {"NUMBA_CPU_NAME": "generic"},
                {"NUMBA_ENABLE_AVX": "0"}, {"NUMBA_CPU_NAME": "host", "DEJAVID_NUMBA_512": "1"}):
        assert cpu_tuning.numba_features(env, "emeraldrapids", AVX512) is None, env


def test_an_existing_prefer_flag_is_replaced_not_duplicated():
    got = cpu_tuning.numba_features({}, "emeraldrapids", AVX512 + ",+prefer-256-bit")
    assert got.split(",").count("-prefer-256-bit") == 1
    assert "+prefer-256-bit" not in got.split(",")


def test_invalid_choice_names_the_variable():
    with pytest.raises(ValueError, match="DEJAVID_NUMBA_512 must be one of auto, 1, 0"):
        cpu_tuning.numba_features({"DEJAVID_NUMBA_512": "yes"}, "emeraldrapids", AVX512)


def test_apply_does_nothing_once_numba_is_imported():
    import numba  # noqa: F401  (the test process has imported it already)
    env = {"DEJAVID_NUMBA_512": "1"}
    assert cpu_tuning.apply(env) is None
    assert env == {"DEJAVID_NUMBA_512": "1"}


def _numba_features_in_fresh_process(choice):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env["DEJAVID_NUMBA_512"] = choice
    code = "import dejavid.runtime, numba; print(numba.config.CPU_FEATURES)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def test_import_order_reaches_numba_config():
    assert _numba_features_in_fresh_process("0") == "None"
    forced = _numba_features_in_fresh_process("1")
    if _host_has_avx512():
        assert forced.endswith(",-prefer-256-bit")
    else:
        assert forced == "None"


@pytest.mark.skipif(not _host_has_avx512(), reason="host has no AVX-512: one code path only")
def test_numba_parity_with_the_other_vector_width():
    """The in-process numba tests run with this host's default; rerun the parity
    tests (forward, backward, fixed path, DBA, float64, non-contiguous) with the
    other setting, so both code paths are checked against the reference here."""
    import numba
    in_process_512 = "-prefer-256-bit" in (numba.config.CPU_FEATURES or "").split(",")
    other = "0" if in_process_512 else "1"
    assert ("-prefer-256-bit" in _numba_features_in_fresh_process(other)) != in_process_512
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env["DEJAVID_NUMBA_512"] = other
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_align_numba.py"),
         "-k", "parity_with_reference or float64 or non_contiguous or local_cost or dba"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
