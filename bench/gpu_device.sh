#!/usr/bin/env bash
# The GPU benchmark section on a lent CUDA machine, in one call:
#
#   bash bench/gpu_device.sh            # or: make bench-gpu-device
#
# Python: .venv/bin/python when it sees CUDA (a machine that ran `make install`), else the
# machine's own python3 when it does (its CUDA torch; `make install` puts the CPU build in .venv),
# else .venv's (which says "no CUDA" and exits 0). If
# that python lacks reelflow's dependencies and a folder of wheels is here ($BENCH_WHEELS, .whl
# by default: the packages and versions of constraints.txt, nothing else), they are installed
# into /tmp/site without the network; otherwise the missing import is named and it exits 2.
# On the nvidia-h200 image (its 2026-11 package list) the section's imports lacked: diffusers,
# pydantic, pydantic_core, annotated-types, typing-inspection, imageio-ffmpeg (the ffmpeg
# binary), ftfy, wcwidth, gguf, soundfile, soxr; reelflow itself is imported from this tree.
#
# Then `python -m bench --only gpu` runs under a hard timeout ($BENCH_GPU_TIMEOUT, 540 s; the
# section fits its rows into $BENCH_GPU_SECONDS, 400 s, and reports what it skipped). The
# report (markdown + JSON), the log and the rows so far (gpu-rows-partial.json, rewritten after
# each model: what is left if the timeout strikes) go to $OUT when it is set, else bench/results.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-bench/results}"
mkdir -p "$out"
log="$out/gpu-device.log"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PREFECT_SERVER_ANALYTICS_ENABLED=false
export BENCH_GPU_SECONDS="${BENCH_GPU_SECONDS:-400}" BENCH_GPU_PARTIAL="$out/gpu-rows-partial.json"

cuda() { "$1" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; }
if [ -x .venv/bin/python ] && cuda .venv/bin/python; then py=.venv/bin/python
elif cuda python3; then py=python3
elif [ -x .venv/bin/python ]; then py=.venv/bin/python  # no CUDA: it says so and exits 0
else py=python3
fi

needs='import diffusers, transformers, pydantic, imageio_ffmpeg, cv2, psutil, bench.gpu, reelflow.motion.ltx2, reelflow.motion.wan22, reelflow.imaging.generate'
if ! "$py" -c "$needs" 2>/dev/null; then
  wheels="${BENCH_WHEELS:-.whl}"
  if compgen -G "$wheels/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$wheels"/*.whl || exit 2
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if ! missing=$("$py" -c "$needs" 2>&1); then
    echo "gpu bench: $py cannot import reelflow's dependencies: $(tail -n 1 <<<"$missing")" >&2
    echo "gpu bench: carry their wheels (constraints.txt versions) in $wheels, or run make install" >&2
    exit 2
  fi
fi

echo "gpu bench: $("$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')" | tee "$log"
timeout -k 15 "${BENCH_GPU_TIMEOUT:-540}" "$py" -m bench --only gpu --out "$out" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "gpu bench: stopped at ${BENCH_GPU_TIMEOUT:-540} s (no report; the rows so far: $BENCH_GPU_PARTIAL)" | tee -a "$log"
exit "$status"
