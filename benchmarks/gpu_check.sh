#!/usr/bin/env bash
# GPU checks in one run, for a machine with an NVIDIA GPU (a lent one has minutes, not hours):
#   1. which NVDEC backend runs (create_bench.video.backends.nvdec), and the GPU tests (frames vs CPU, ALWIG on CUDA);
#   2. ALWIG trained a few epochs on CUDA on CREATE-sample (wall time, loss log);
#   3. benchmarks/decode.py with the GPU rows (e), on CREATE-sample and the 30 s 720p clips.
# Every step has its own time limit and writes its log under OUTDIR, so a cut-short run still
# leaves what it measured.
#
#   bash benchmarks/gpu_check.sh [DATA] [OUTDIR]      (python3 must have torch with CUDA, decord, av)
set -u
DATA=${1:-data/create-sample}
OUTDIR=${2:-gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
T0=$(date +%s)
step() { echo; echo "=== [$(($(date +%s) - T0)) s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUTDIR/gpu.txt"
nproc
$PY - <<'EOF' 2>&1 | tee -a "$OUTDIR/gpu.txt"
import av, decord, numpy, torch
from av.codec.hwaccel import hwdevices_available
from create_bench.video.backends.nvdec import gpu_decode_status
print(f"python torch {torch.__version__} cuda {torch.cuda.is_available()} numpy {numpy.__version__} "
      f"decord {decord.__version__} av {av.__version__} (FFmpeg hw devices {hwdevices_available()})")
for name, why in gpu_decode_status().items():
    print(f"NVDEC backend {name}: {'runs here' if why is None else why}")
EOF
ldconfig -p 2>/dev/null | grep -E "libnvcuvid|libcuda\.so" | head -3

step "GPU tests"
timeout "${TESTS_S:-150}" $PY -m pytest -q -p no:cacheprovider -k "gpu or cuda" -rs \
    tests/test_video_decode.py tests/test_alwig_model.py tests/test_extract.py 2>&1 | tee "$OUTDIR/pytest-gpu.log" | tail -15

step "ALWIG on CUDA: 3 epochs on $DATA"
timeout "${TRAIN_S:-120}" $PY -m create_bench train alwig --data "$DATA" --out /tmp/alwig-cuda --device cuda \
    --epochs 3 --no-progress 2>&1 | tee "$OUTDIR/alwig-cuda.log" | tail -12
[ -f /tmp/alwig-cuda/log.jsonl ] && cp /tmp/alwig-cuda/log.jsonl "$OUTDIR/alwig-cuda-log.jsonl"
[ -f /tmp/alwig-cuda/config.json ] && echo "checkpoint written: $(ls /tmp/alwig-cuda | tr '\n' ' ')"

step "decode benchmark with GPU rows (NVDEC utilisation sampled every second in dmon.log)"
nvidia-smi dmon -s u -d 1 >"$OUTDIR/dmon.log" 2>&1 &
DMON=$!
timeout "${BENCH_S:-300}" $PY benchmarks/decode.py --data "$DATA" --repeat 3 --pair-repeat 3 2>&1 \
    | tee "$OUTDIR/decode-bench.log"
kill "$DMON" 2>/dev/null
awk 'NR>2 && $5+0>0 {n++; if ($5+0>m) m=$5+0} END {print "dmon: seconds with NVDEC busy: " n+0 ", peak dec% " m+0}' "$OUTDIR/dmon.log"
step "done"
