#!/usr/bin/env bash
# One prepared check of the CUDA backend on a GPU machine, in at most 8 minutes:
# versions, a single-arch in-place build of kernel_setup/, the CUDA tests, both
# benches, a short demo training run and the video-extraction speed.  See usage() and kernel_setup/README.md.
#
# Never installs anything (the GPU machine has no network): it uses the python and
# torch found on PATH and this repository's files.  Each step runs under its own
# `timeout`; a failing step does not stop the later ones.

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
# Whole run, seconds: every step's timeout is also cut to what is left of this,
# so the script ends within 8 minutes even if steps hit their limits.
TOTAL_BUDGET=465
KILL_AFTER=5            # SIGKILL this long after a step's SIGTERM
DEMO_DATA=data/japanese_vowels

usage() {
    cat <<EOF
Usage: bash kernel_setup/gpu_check.sh [--dry-run] [--help]

Checks the DejaVid CUDA kernels on this machine's GPU in at most ${TOTAL_BUDGET} s (every
step has its own timeout): nvidia-smi and versions, an in-place build of
kernel_setup/ for GPU 0's architecture only, tests/test_align_cuda.py + tests/test_kernel_build.py,
bench/bench_align.py and bench/bench_epoch.py (K 8 and 64) on cuda, and 5 epochs
of the JapaneseVowels demo on cuda, and bench/bench_extract.py on cuda (clips/s of
r2plus1d_18 and VideoMAE-base-sized random weights, batch 64, float16).  Ends with a pass/fail/skip table, wall
times and the benches' headline figures.  Exit status 0 only if every step passed.

  --dry-run   list the numbered steps with their exact commands and timeouts,
              run nothing, exit 0
  --help      this text

Environment:
  DEJAVID_GPU_LOG_DIR  folder for the log (gpu_check.log, one NN-step.log per
                       step, the demo run and its centroid cache); default: a
                       new folder from mktemp -d
  DEJAVID_CUDA_ARCHS   build for these archs instead of GPU 0's (e.g. "90")
  PYTHON               interpreter to use (default: python)
EOF
}

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

if [[ -n "${DEJAVID_GPU_LOG_DIR:-}" ]]; then
    LOGDIR=$DEJAVID_GPU_LOG_DIR
elif (( DRY_RUN )); then
    LOGDIR=MKTEMP_DIR   # the dry run creates nothing
else
    LOGDIR=$(mktemp -d -t dejavid-gpu-check.XXXXXX) || { echo "mktemp -d failed" >&2; exit 1; }
fi
if (( ! DRY_RUN )); then
    mkdir -p "$LOGDIR" || { echo "cannot create log folder $LOGDIR" >&2; exit 1; }
    LOGDIR=$(cd "$LOGDIR" && pwd)
fi
LOG="$LOGDIR/gpu_check.log"
q() { printf '%q' "$1"; }   # quote a path for a command line

# ---------------------------------------------------------------- the steps
# Parallel arrays, one entry per step: name, timeout (s), command (run with
# `bash -c` from the repository root), precondition (a function, or "").
NAMES=() TIMEOUTS=() CMDS=() NEEDS=()
add_step() { NAMES+=("$1"); TIMEOUTS+=("$2"); CMDS+=("$3"); NEEDS+=("$4"); }

VERSIONS_PY='import sys, torch; from importlib import metadata as md; print("python", sys.version.split()[0], "| torch", torch.__version__, "| torch CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(), "| GPUs", torch.cuda.device_count()); print("GPU 0:", torch.cuda.get_device_name(0), "| compute capability %d.%d" % torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else print("torch sees no CUDA device"); print(*(f"{p} {next((d.version for d in md.distributions(name=p)), None)}" for p in ("numba", "numpy", "aeon", "setuptools", "ninja")), sep=" | ")'

if [[ -n "${DEJAVID_CUDA_ARCHS:-}" ]]; then
    ARCH_EXPR=$(q "$DEJAVID_CUDA_ARCHS")
else
    # GPU 0's compute capability, e.g. 90 on H100/H200: SASS + PTX for that arch only.
    ARCH_EXPR="\$($PY -c 'import torch; print(\"%d%d\" % torch.cuda.get_device_capability(0))')"
fi

add_step "nvidia-smi" 10 "nvidia-smi" ""
# (VERSIONS_PY holds no single quote.)
add_step "versions" 15 "$PY -c '$VERSIONS_PY' && { command -v nvcc && nvcc --version | tail -n 2 || echo 'nvcc not on PATH (the build also looks in CUDA_HOME)'; }" ""
# In place: the module lands in kernel_setup/ (on PYTHONPATH below); objects and
# the linked copy go to the log folder.  A stale module is removed first so a failed build cannot pass.
# setup.py turns DEJAVID_CUDA_ARCHS into -gencode flags, and torch then adds no arch
# flags of its own (TORCH_CUDA_ARCH_LIST would be ignored).
add_step "build (one arch)" 80 \
    "rm -f kernel_setup/dejavid_kernels*.so && arch=$ARCH_EXPR && echo \"building for arch \$arch\" && cd kernel_setup && DEJAVID_CUDA_ARCHS=\$arch $PY setup.py build_ext --inplace --build-temp $(q "$LOGDIR/build") --build-lib $(q "$LOGDIR/build/lib")" ""
add_step "import kernels" 15 \
    "$PY -c 'import dejavid_kernels as K; from dejavid.alignment import cuda as align_cuda; print(K.__file__); assert align_cuda.available(), \"dejavid.alignment.cuda does not see the kernels and a GPU\"; print(\"dejavid_kernels loaded, cuda backend available\")'" need_build
add_step "pytest cuda + build" 75 \
    "$PY -m pytest -q -rs tests/test_align_cuda.py tests/test_kernel_build.py tests/test_packing.py tests/test_band.py tests/test_open_ends.py -k 'cuda or build'" need_kernels
add_step "bench_align" 80 \
    "$PY bench/bench_align.py --device cuda --shapes hmdb51,k400 --repeats 5 --cap 3" need_kernels
add_step "bench_epoch K=8" 45 "$PY bench/bench_epoch.py --device cuda --num_timesteps 8" need_kernels
add_step "bench_epoch K=64" 45 "$PY bench/bench_epoch.py --device cuda --num_timesteps 64" need_kernels
add_step "prepare demo" 20 "$PY prepare_demo.py --out $DEMO_DATA" ""
# The demo trains even without the kernels (the reference backend on the GPU).
TRAIN_CMD="$PY train_dejavid.py --config configs/japanese_vowels.yaml --device cuda --backend cuda --num_epochs 5 --output_dir $(q "$LOGDIR/runs") --cache_dir $(q "$LOGDIR/cache") --no-progress"
add_step "demo train (5 epochs)" 35 "$TRAIN_CMD" need_demo_data
# Extraction speed (docs/extraction.md): random weights, videos generated by the bench;
# needs PyAV and transformers (torchvision for the r2plus1d_18 row), no kernels.
add_step "bench_extract" 60 "$PY bench/bench_extract.py --device cuda --amp float16 --batch-clips 64 --videomae base --workers 8 --videos 16 --frames 160 --repeats 3" ""

NSTEPS=${#NAMES[@]}
STATUS=() SECS=() NOTES=()

step_index() {  # index of the step named $1
    local i
    for i in "${!NAMES[@]}"; do [[ "${NAMES[$i]}" == "$1" ]] && { echo "$i"; return; }; done
    return 1
}
passed() { [[ "${STATUS[$(step_index "$1")]:-}" == PASS ]]; }
# Preconditions of step $1: return 1 with the reason in WHY to skip it.
WHY=""
need_build() { passed "build (one arch)" || { WHY="the build failed"; return 1; }; }
need_kernels() { passed "import kernels" || { WHY="the kernels are not importable"; return 1; }; }
need_demo_data() {
    [[ -f "$DEMO_DATA/id2splits.pkl" ]] || { WHY="no demo data in $DEMO_DATA"; return 1; }
    if ! passed "import kernels"; then  # still worth training: the reference on the GPU
        CMDS[$1]=${CMDS[$1]/--backend cuda/--backend auto}
        echo "the kernels are not importable: training with --backend auto (the reference)"
    fi
}

need_text() {  # the dry run's words for a precondition
    case "$1" in
        need_build) echo "  (only if step 3 passed)" ;;
        need_kernels) echo "  (only if step 4 passed)" ;;
        need_demo_data) echo "  (only if $DEMO_DATA exists)" ;;
    esac
}

# ---------------------------------------------------------------- figures from the logs
step_log() { printf '%s/%02d-%s.log' "$LOGDIR" "$(( $1 + 1 ))" "$(echo "${NAMES[$1]}" | tr -c 'A-Za-z0-9=\n' '_')"; }

fig_pytest() {  # "N passed, M skipped in Xs"
    grep -E '[0-9]+ (passed|failed|errors?|skipped)' "$1" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//'
}

fig_align() {  # per shape: cuda fwd+bwd s, vs original-style, local-cost % of matmul
    awk '
        /^[a-z0-9]+: B [0-9]+, C / { shape = substr($1, 1, length($1) - 1); order[++n] = shape }
        $1 == shape && $2 == "original" { orig[shape] = $(NF - 4) }
        $1 == shape && $2 == "cuda" { fb[shape] = $(NF - 4); sp[shape] = $NF }
        /^local-cost stage \(cuda\)/ && match($0, /= [0-9]+% of matmul/) {
            lc[shape] = substr($0, RSTART + 2, RLENGTH - 12) }
        END {
            for (i = 1; i <= n; i++) {
                s = order[i]
                if (!(s in fb)) continue
                line = s " f+b " fb[s] " s"
                if (s in orig) line = line " (orig " orig[s] " s, " sp[s] ")"
                if (s in lc) line = line ", lc " lc[s] " of mm"
                out = out (out == "" ? "" : "; ") line
            }
            print out
        }' "$1"
}

fig_epoch() {  # epoch seconds (train + val) and the backend that ran
    local be ep
    be=$(grep -m 1 -o 'backend [a-z]*' "$1" | cut -d' ' -f2)
    ep=$(sed -n 's/^epoch 1: train \([0-9.]*\) s .*, val \([0-9.]*\) s .*, epoch \([0-9.]*\) s;.*/epoch \3 s (train \1 + val \2)/p' "$1" | head -n 1)
    [[ -n "$ep" ]] && echo "$ep, backend ${be:-?}"
}

fig_train() { grep -o 'best val top-1 [0-9.]*' "$1" | tail -n 1; }

fig_extract() {  # per encoder: encoder-only and end-to-end clips/s
    sed -n 's/^HEADLINE \(.*\) on [a-z0-9:]*: encoder \([0-9.]*\) clips\/s, end to end \([0-9.]*\) clips\/s = \([0-9]*%\).*/\1 \2 \/ \3 clips\/s (\4)/p' "$1" | paste -sd ';' - | sed 's/;/; /g'
}

figures() {  # headline of step $1 from its log, or nothing
    local f
    f=$(step_log "$1")
    [[ "${STATUS[$1]}" != SKIP && -f "$f" ]] || return 0
    case "${NAMES[$1]}" in
        pytest*) fig_pytest "$f" ;;
        bench_align) fig_align "$f" ;;
        bench_epoch*) fig_epoch "$f" ;;
        demo\ train*) fig_train "$f" ;;
        bench_extract) fig_extract "$f" ;;
        build*) grep -m 1 -o 'building for arch [0-9a-z;]*' "$f" ;;
        versions) grep -m 1 -o 'GPU 0: .*' "$f" ;;
    esac
}

# ---------------------------------------------------------------- dry run
if (( DRY_RUN )); then
    total=0
    echo "gpu_check.sh --dry-run: nothing is run.  Repository: $ROOT"
    echo "log: $LOG (step outputs: $LOGDIR/NN-<step>.log)"
    [[ "$LOGDIR" == MKTEMP_DIR ]] && echo "MKTEMP_DIR: a new folder from mktemp -d at run time (or set DEJAVID_GPU_LOG_DIR)"
    echo "environment of every step: PYTHONPATH=$ROOT/kernel_setup:$ROOT PYTHONUNBUFFERED=1"
    for i in "${!NAMES[@]}"; do
        printf '\n%2d. %s  [timeout %ss]%s\n    %s\n' "$(( i + 1 ))" "${NAMES[$i]}" "${TIMEOUTS[$i]}" \
            "$(need_text "${NEEDS[$i]}")" "${CMDS[$i]}"
        total=$(( total + TIMEOUTS[i] ))
    done
    echo
    echo "sum of step timeouts: ${total}s; whole run capped at ${TOTAL_BUDGET}s (+${KILL_AFTER}s kill grace)"
    echo "without the kernels, step $(( $(step_index "demo train (5 epochs)") + 1 )) trains with --backend auto (the reference on the GPU)"
    exit 0
fi

# ---------------------------------------------------------------- run
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT/kernel_setup:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1       # output survives a timeout kill, and interleaves in order
exec > >(tee "$LOG") 2>&1
TEE_PID=$!

now() { date +%s.%N; }
T_START=$(now)
elapsed() { awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }

echo "DejaVid GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(hostname), repository $ROOT"
echo "log: $LOG"

for i in "${!NAMES[@]}"; do
    n=$(( i + 1 ))
    printf '\n===== %d/%d %s =====\n' "$n" "$NSTEPS" "${NAMES[$i]}"
    SECS[i]=-
    rm -f "$(step_log "$i")"    # a folder reused from an earlier run: no stale figures
    if [[ -n "${NEEDS[$i]}" ]] && ! "${NEEDS[$i]}" "$i"; then
        STATUS[i]=SKIP; NOTES[i]=$WHY
        echo "skipped: $WHY"
        continue
    fi
    left=$(( TOTAL_BUDGET - $(elapsed) - KILL_AFTER ))
    if (( left < 5 )); then
        STATUS[i]=SKIP; NOTES[i]="no time left"
        echo "skipped: no time left in the ${TOTAL_BUDGET}s budget"
        continue
    fi
    limit=${TIMEOUTS[$i]}
    (( left < limit )) && limit=$left
    echo "\$ ${CMDS[$i]}"
    echo "(timeout ${limit}s)"
    t0=$(now)
    timeout -k "$KILL_AFTER" "$limit" bash -c "${CMDS[$i]}" </dev/null 2>&1 | tee "$(step_log "$i")"
    rc=${PIPESTATUS[0]}
    SECS[i]=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if (( rc == 0 )); then
        STATUS[i]=PASS
    elif (( rc == 124 || rc == 137 )); then
        STATUS[i]=FAIL; NOTES[i]="timed out after ${limit}s"
    else
        STATUS[i]=FAIL; NOTES[i]="exit status $rc"
    fi
    echo "----- ${STATUS[$i]} in ${SECS[$i]}s${NOTES[$i]:+ (${NOTES[$i]})}"
done

echo
echo "===== summary ($(elapsed)s in all) ====="
printf '%-3s %-22s %-4s %7s  %s\n' "#" "step" "" "wall s" "figures / notes"
fails=0
for i in "${!NAMES[@]}"; do
    [[ "${STATUS[$i]}" == PASS ]] || fails=$(( fails + 1 ))
    fig=$(figures "$i")
    note=${NOTES[$i]:-}
    printf '%-3s %-22s %-4s %7s  %s\n' "$(( i + 1 ))" "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" \
        "${fig}${fig:+${note:+; }}${note}"
done
echo
if (( fails == 0 )); then
    echo "all $NSTEPS steps passed"
else
    echo "$fails of $NSTEPS steps did not pass"
fi
echo "log: $LOG"
# Let tee write the last lines before the script exits.
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
(( fails == 0 ))
