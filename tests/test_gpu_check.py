"""kernel_setup/gpu_check.sh, the prepared GPU check, exercised without a GPU.

- ``--dry-run`` lists every step with its exact command and timeout, runs nothing
  and honours DEJAVID_GPU_LOG_DIR; the flags it passes exist in the scripts;
- ``bash -n`` parses it (and shellcheck finds nothing, where installed);
- unknown options fail with a message;
- a full run in a scratch copy of the repository, with fake ``python`` and
  ``nvidia-smi`` first on PATH, goes through the real control flow: logs, step
  statuses, the summary's figures grepped from bench outputs (bench_epoch's is a
  real CPU run of it), exit status, and the skips after a failed build.
"""
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "kernel_setup" / "gpu_check.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

STEP_RE = re.compile(r"^\s*(\d+)\. (.+?)  \[timeout (\d+)s\].*\n    (.+)$", re.M)


def _run(args, env=None, cwd=ROOT, script=SCRIPT, timeout=120):
    return subprocess.run([BASH, str(script), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def _steps(out):
    """[(number, name, timeout, argv of the command)] listed by --dry-run."""
    return [(int(n), name, int(t), cmd) for n, name, t, cmd in STEP_RE.findall(out)]


def _one(steps, pred):
    found = [s for s in steps if pred(s[3])]
    assert len(found) == 1, [s[3] for s in steps]
    return found[0]


def _argv(cmd):
    return shlex.split(cmd)


def _flag(argv, name):
    assert name in argv, argv
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("gpu") / "log dir"  # a space: quoting must hold
    proc = _run(["--dry-run"], env={"DEJAVID_GPU_LOG_DIR": str(logdir)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, logdir


def test_script_parses():
    proc = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed")
    proc = subprocess.run([shellcheck, "-x", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_dry_run_lists_numbered_steps_within_eight_minutes(dry):
    out, logdir = dry
    steps = _steps(out)
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 9
    assert sum(s[2] for s in steps) <= 8 * 60
    assert re.search(r"whole run capped at (\d+)s \(\+(\d+)s", out)
    cap, grace = map(int, re.search(r"capped at (\d+)s \(\+(\d+)s", out).groups())
    assert cap + grace <= 8 * 60
    assert steps[0][3] == "nvidia-smi"
    versions = _one(steps, lambda c: "torch.version.cuda" in c)[3]
    assert "torch.__version__" in versions and "nvcc --version" in versions


def test_dry_run_builds_one_arch_in_place(dry):
    out, logdir = dry
    steps = _steps(out)
    build = _one(steps, lambda c: "setup.py" in c)[3]
    # the arch is GPU 0's compute capability, one value, handed to setup.py
    assert "arch=$(python -c 'import torch; print(\"%d%d\" % " \
           "torch.cuda.get_device_capability(0))')" in build
    assert "cd kernel_setup && DEJAVID_CUDA_ARCHS=$arch python setup.py build_ext --inplace" in build
    assert not re.search(r"\bpip3? install\b|-m pip\b", out)  # no network on the GPU machine
    # a preset DEJAVID_CUDA_ARCHS replaces the detection
    proc = _run(["--dry-run"], env={"DEJAVID_CUDA_ARCHS": "90"})
    build90 = _one(_steps(proc.stdout), lambda c: "setup.py" in c)[3]
    assert "arch=90 &&" in build90 and "get_device_capability" not in build90
    # setup.py turns that one value into one SASS target plus its PTX
    spec = importlib.util.spec_from_file_location("kernel_setup_py", ROOT / "kernel_setup" / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # setup() itself runs only under __main__
    assert len(setup_py.arch_flags("90")) == 2
    # later steps find the module built in place in kernel_setup/
    assert f"PYTHONPATH={ROOT}/kernel_setup:{ROOT}" in out
    names = [s[1] for s in steps]
    assert names.index("build (one arch)") < names.index("import kernels")


def test_dry_run_tests_and_benches(dry):
    out, _ = dry
    steps = _steps(out)
    pyt = _argv(_one(steps, lambda c: "-m pytest" in c)[3])
    assert {"tests/test_align_cuda.py", "tests/test_kernel_build.py"} <= set(pyt)
    align = _argv(_one(steps, lambda c: "bench_align.py" in c)[3])
    assert _flag(align, "--device") == "cuda"
    assert set(_flag(align, "--shapes").split(",")) == {"hmdb51", "k400"}
    assert float(_flag(align, "--cap")) > 0 and int(_flag(align, "--repeats")) >= 1
    epochs = [_argv(s[3]) for s in steps if "bench_epoch.py" in s[3]]
    assert len(epochs) == 2
    assert all(_flag(a, "--device") == "cuda" for a in epochs)
    assert sorted(int(_flag(a, "--num_timesteps")) for a in epochs) == [8, 64]
    # the flags exist in bench_align.py (bench_epoch's --num_timesteps comes with another branch)
    helps = subprocess.run([sys.executable, "bench/bench_align.py", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120).stdout
    for flag in ("--device", "--shapes", "--cap", "--repeats"):
        assert flag in helps


def test_dry_run_demo_training_on_cuda_into_log_dir(dry):
    out, logdir = dry
    steps = _steps(out)
    prep = _one(steps, lambda c: "prepare_demo.py" in c)
    train = _one(steps, lambda c: "train_dejavid.py" in c)
    assert prep[0] < train[0]
    argv = _argv(train[3])
    from dejavid.config.files import DEFAULTS, load_config
    overrides = [a for a in argv[argv.index("--config") + 2:] if a != "--no-progress"]
    cfg = load_config(ROOT / _flag(argv, "--config"), overrides)
    assert cfg["device"] == "cuda" and cfg["num_epochs"] == 5 and cfg["name"] == "japanese_vowels"
    assert cfg["output_dir"] == str(logdir / "runs") and cfg["cache_dir"] == str(logdir / "cache")
    assert "--no-progress" in argv and set(DEFAULTS) >= {"backend", "cache_dir"}
    # prepare_demo writes where the config reads
    assert _flag(_argv(prep[3]), "--out") == cfg["id2feats"]


def test_dry_run_measures_extraction_on_cuda(dry):
    out, _ = dry
    argv = _argv(_one(_steps(out), lambda c: "bench_extract.py" in c)[3])
    assert _flag(argv, "--device") == "cuda" and _flag(argv, "--amp") == "float16"
    assert _flag(argv, "--batch-clips") == "64" and _flag(argv, "--videomae") == "base"
    assert "torchvision:r2plus1d_18" in subprocess.run(
        [sys.executable, "bench/bench_extract.py", "--help"], cwd=ROOT, capture_output=True,
        text=True, timeout=120).stdout
    # the HEADLINE format fig_extract reads is the one bench_extract.py prints
    src = (ROOT / "bench" / "bench_extract.py").read_text()
    assert 'f"HEADLINE {name} on {args.device}: encoder {only:.1f} clips/s, end to end "' in src


def test_dry_run_honours_log_dir_and_creates_nothing(dry, tmp_path):
    out, logdir = dry
    assert f"log: {logdir}/gpu_check.log" in out
    assert not logdir.exists()
    proc = _run(["--dry-run"], env={"DEJAVID_GPU_LOG_DIR": ""})
    assert "log: MKTEMP_DIR/gpu_check.log" in proc.stdout


def test_unknown_option_and_help():
    proc = _run(["--bogus"])
    assert proc.returncode != 0 and "unknown option '--bogus'" in proc.stderr
    assert proc.stdout == ""
    proc = _run(["--help"])
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "DEJAVID_GPU_LOG_DIR" in proc.stdout


# ---------------------------------------------------------------------------- fake run
# bench_align.py's output on a GPU, in its print format (rows: f"{s:7} {name:15}
# {label:18} ..."; the figures are made up).
BENCH_ALIGN_OUT = """\
device cuda, NVIDIA H100 80GB HBM3, torch 2.9.0+cu128, 16 torch threads, OMP_WAIT_POLICY=PASSIVE
float32 matmul ceiling (8192^3, best of 5, same run, TF32 off): 51.20 TFLOP/s

hmdb51: B 16, C 51, K 64, T 33, F 1459  (7.54 GFLOP of local cost per batch)
shape   method          measured on           fwd s  fwd+bwd s  fwd TF/s  f+b TF/s  peak MB f+b speedup
hmdb51  original        B=16 n=2/2           2.1000     3.0000      0.00      0.00   1200.0        1.0x
hmdb51  ref             B=16 n=5/5           0.2000     0.3000      0.04      0.03    800.0       10.0x
hmdb51  cuda            B=16 n=5/5           0.0020     0.0030      3.77      2.51     60.0     1000.0x
local-cost stage (cuda): 0.0005 s, 15.08 TFLOP/s = 29% of matmul (median of 5 rounds alternating with a 8192^3 matmul; min 28%, max 30%)
forward (cuda): 3.77 TFLOP/s = 7% of matmul

k400: B 48, C 400, K 64, T 33, F 1808  (219.95 GFLOP of local cost per batch)
shape   method          measured on           fwd s  fwd+bwd s  fwd TF/s  f+b TF/s  peak MB f+b speedup
k400    original        B=8 x6 scaled n=1/1  30.0000    36.0000      0.01      0.01   9000.0        1.0x
k400    ref             B=48 n=2/2           4.0000     6.0000      0.05      0.04   5000.0        6.0x
k400    cuda            B=48 n=5/5           0.0200     0.0400     11.00      5.50    900.0      900.0x
local-cost stage (cuda): 0.0100 s, 22.00 TFLOP/s = 43% of matmul (median of 5 rounds alternating with a 8192^3 matmul; min 40%, max 45%)
forward (cuda): 11.00 TFLOP/s = 21% of matmul

HEADLINE hmdb51 fwd+bwd: cuda 0.0030 s vs original-style 3.00 s = 1000x faster; peak extra 60 MB; local-cost stage (cuda): 0.0005 s, 15.08 TFLOP/s = 29% of matmul (median of 5 rounds alternating with a 8192^3 matmul; min 28%, max 30%)
"""

# bench_extract.py's HEADLINE lines in its print format (the figures are made up).
BENCH_EXTRACT_OUT = """\
device cuda, torch 2.9.0+cu128, 16 torch threads, 16 CPUs, load average 1.00, 1.00, 1.00
HEADLINE torchvision:r2plus1d_18 on cuda: encoder 800.0 clips/s, end to end 750.5 clips/s = 94% of encoder-only (load average 2.00, 1.00, 1.00)
HEADLINE hf:videomae (base) on cuda: encoder 300.2 clips/s, end to end 290.0 clips/s = 97% of encoder-only (load average 2.00, 1.00, 1.00)
"""

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stands in for python on a GPU machine: canned output per command, argv logged.
echo "$*" >> "$FAKE_DIR/calls.txt"
if [[ "$1" == -c ]]; then
    case "$2" in
        "import torch; print("*) echo 90 ;;
        "import sys, torch;"*) echo "python 3.11.7 | torch 2.9.0+cu128"
                               echo "GPU 0: NVIDIA H100 80GB HBM3 | compute capability 9.0" ;;
        "import dejavid_kernels"*) echo "dejavid_kernels loaded, cuda backend available" ;;
        *) echo "fake python: unexpected code $2" >&2; exit 3 ;;
    esac
    exit 0
fi
case "$1" in
    setup.py) [[ -n "${FAKE_BUILD_FAIL:-}" ]] && { echo "error: nvcc failed" >&2; exit 1; }
              echo "built for DEJAVID_CUDA_ARCHS=$DEJAVID_CUDA_ARCHS in $PWD" ;;
    -m) echo "40 passed, 2 skipped in 31.20s" ;;
    bench/bench_align.py) if [[ -n "${FAKE_ALIGN_HANG:-}" ]]; then
                              head -n 7 "$FAKE_DIR/bench_align.txt"
                              sleep 60 & echo $! > "$FAKE_DIR/grandchild.pid"; wait
                          else cat "$FAKE_DIR/bench_align.txt"; fi ;;
    bench/bench_epoch.py) cat "$FAKE_DIR/bench_epoch.txt" ;;
    prepare_demo.py) mkdir -p "$3" && touch "$3/id2splits.pkl" && echo "JapaneseVowels -> $3" ;;
    bench/bench_extract.py) cat "$FAKE_DIR/bench_extract.txt" ;;
    train_dejavid.py) echo "epoch 5/5 loss 0.5 val@1 0.9784"
                      echo "done: best val top-1 0.9784; checkpoints in somewhere" ;;
    *) echo "fake python: unexpected $*" >&2; exit 3 ;;
esac
"""


@pytest.fixture(scope="module")
def bench_epoch_out(tmp_path_factory):
    """A real bench_epoch.py run, on CPU at 2% of the HMDB51 video counts."""
    proc = subprocess.run([sys.executable, "bench/bench_epoch.py", "--device", "cpu",
                           "--scale", "0.02"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _fake_repo(tmp_path, bench_epoch_out):
    repo = tmp_path / "repo"
    (repo / "kernel_setup").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "kernel_setup" / "gpu_check.sh")
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bench_align.txt").write_text(BENCH_ALIGN_OUT)
    (fake / "bench_epoch.txt").write_text(bench_epoch_out)
    (fake / "bench_extract.txt").write_text(BENCH_EXTRACT_OUT)
    for name, body in (("python", FAKE_PYTHON), ("nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI fake'\n")):
        (fake / "bin" / name).write_text(body)
        (fake / "bin" / name).chmod(0o755)
    env = {"PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE_DIR": str(fake),
           "DEJAVID_GPU_LOG_DIR": str(tmp_path / "logs"), "PYTHON": ""}  # "": plain python
    return repo, fake, env


def _summary(out):
    """{step name: (status, rest of the row)} from the summary table."""
    table = out.split("===== summary")[1]
    rows = re.findall(r"^\d+ +(.+?) +(PASS|FAIL|SKIP) +(\S+) *(.*)$", table, re.M)
    return {name: (status, secs, rest) for name, status, secs, rest in rows}


def test_fake_run_passes_and_summarises(tmp_path, bench_epoch_out):
    repo, fake, env = _fake_repo(tmp_path, bench_epoch_out)
    proc = _run([], env=env, cwd=tmp_path, script=repo / "kernel_setup" / "gpu_check.sh")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    logdir = tmp_path / "logs"
    log = (logdir / "gpu_check.log").read_text()
    assert out.count(f"log: {logdir}/gpu_check.log") == 2
    assert "===== summary" in log and "all 11 steps passed" in log
    rows = _summary(out)
    assert len(rows) == 11 and all(r[0] == "PASS" for r in rows.values()), rows
    assert all(float(r[1]) >= 0 for r in rows.values())
    assert rows["build (one arch)"][2] == "building for arch 90"
    assert rows["pytest cuda + build"][2] == "40 passed, 2 skipped in 31.20s"
    assert rows["bench_align"][2] == ("hmdb51 f+b 0.0030 s (orig 3.0000 s, 1000.0x), lc 29% of mm; "
                                      "k400 f+b 0.0400 s (orig 36.0000 s, 900.0x), lc 43% of mm")
    tr, va, ep = re.search(r"^epoch 1: train (\S+) s .*, val (\S+) s .*, epoch (\S+) s;",
                           bench_epoch_out, re.M).groups()
    backend = re.search(r"backend (\w+)", bench_epoch_out).group(1)
    assert rows["bench_epoch K=8"][2] == f"epoch {ep} s (train {tr} + val {va}), backend {backend}"
    assert rows["demo train (5 epochs)"][2] == "best val top-1 0.9784"
    assert rows["bench_extract"][2] == ("torchvision:r2plus1d_18 800.0 / 750.5 clips/s (94%); "
                                        "hf:videomae (base) 300.2 / 290.0 clips/s (97%)")
    calls = (fake / "calls.txt").read_text()
    assert "setup.py build_ext --inplace" in calls and "--backend cuda" in calls
    assert (tmp_path / "repo" / "data" / "japanese_vowels" / "id2splits.pkl").exists()
    assert "built for DEJAVID_CUDA_ARCHS=90 in " + str(repo / "kernel_setup") in log
    step_logs = sorted(p.name for p in logdir.glob("[0-9][0-9]-*.log"))
    assert len(step_logs) == 11 and step_logs[5].startswith("06-bench_align")


def test_fake_run_after_failed_build_skips_cuda_steps(tmp_path, bench_epoch_out):
    repo, fake, env = _fake_repo(tmp_path, bench_epoch_out)
    env["FAKE_BUILD_FAIL"] = "1"
    proc = _run([], env=env, cwd=tmp_path, script=repo / "kernel_setup" / "gpu_check.sh")
    assert proc.returncode == 1
    rows = _summary(proc.stdout)
    assert rows["build (one arch)"][0] == "FAIL" and "exit status 1" in rows["build (one arch)"][2]
    for name in ("import kernels", "pytest cuda + build", "bench_align", "bench_epoch K=8",
                 "bench_epoch K=64"):
        assert rows[name][0] == "SKIP", (name, rows[name])
    assert rows["prepare demo"][0] == "PASS" and rows["demo train (5 epochs)"][0] == "PASS"
    calls = (fake / "calls.txt").read_text()
    assert "bench_align" not in calls and "-m pytest" not in calls
    assert "--backend auto" in calls and "--backend cuda" not in calls
    assert rows["bench_extract"][0] == "PASS"                      # needs no kernels
    assert "6 of 11 steps did not pass" in proc.stdout


def test_fake_run_cuts_a_hung_step_and_keeps_the_budget(tmp_path, bench_epoch_out):
    repo, fake, env = _fake_repo(tmp_path, bench_epoch_out)
    script = repo / "kernel_setup" / "gpu_check.sh"
    text = script.read_text()
    assert "\nTOTAL_BUDGET=465\n" in text and "\nKILL_AFTER=5 " in text
    script.write_text(text.replace("\nTOTAL_BUDGET=465\n", "\nTOTAL_BUDGET=11\n"))
    env["FAKE_ALIGN_HANG"] = "1"
    t0 = time.monotonic()
    proc = _run([], env=env, script=script)
    wall = time.monotonic() - t0
    assert proc.returncode == 1 and wall < 11 + 5 + 5, wall
    rows = _summary(proc.stdout)
    # its limit: what is left of the budget, less the kill grace (the steps before take ~1 s)
    assert rows["bench_align"][0] == "FAIL"
    assert re.fullmatch(r"timed out after [56]s", rows["bench_align"][2]), rows["bench_align"]
    for name in ("bench_epoch K=8", "bench_epoch K=64", "prepare demo", "bench_extract"):
        assert rows[name] == ("SKIP", "-", "no time left"), (name, rows[name])
    assert rows["demo train (5 epochs)"][0] == "SKIP"  # (no demo data: its reason comes first)
    # output printed before the kill is kept; the step's child processes are gone too
    assert "hmdb51  original" in (tmp_path / "logs" / "06-bench_align.log").read_text()
    pid = int((fake / "grandchild.pid").read_text())
    assert _gone(pid, within=5.0), f"process {pid} of the timed-out step still runs"


def _gone(pid, within):
    """True once process ``pid`` has exited (a zombie counts) within ``within`` seconds."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            # the state follows the parenthesised command name
            if stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False
