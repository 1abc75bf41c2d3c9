#!/bin/sh
# The GPU measurement, prepared for a GPU node with no network and no Node.js
# (a cluster's compute node, or the device machine some sessions of this
# project are lent for 15 minutes in all). It needs `retromae bundle`'s
# archive (or the folder it unpacks to) and the data (../shared/data's
# beir-scifact and bert-base-uncased, as that folder or as a .tar.xz of the
# two), and nothing else that Node or npm would bring.
#
#   sh scripts/gpu-node-check.sh ARCHIVE DATA OUT [STEP ...]
#
# STEP is one of
#   doctor               retromae doctor and info, and what the machine has (nvidia-smi, Vulkan files)
#   bench:PRESET:BxL     bench gpu for one configuration, PyTorch on CUDA in the same run
#   quickstart           the quickstart notebook at its default budget on webgpu (RETROMAE_BACKEND), timed end to end
#   host                 bench host for tiny and mini: a step's host time on this CPU (Dawn's Null
#                        backend, no GPU work) and PyTorch's on meta: near bench gpu's ms/step, a step is CPU-bound
# and the default is: doctor bench:tiny:16x128 bench:mini:32x128 bench:base:32x512 quickstart bench:small:32x256 host
#
# Every step writes into OUT as it goes (machine.txt, doctor.txt, info.json,
# bench-gpu.jsonl, bench-gpu.log, quickstart.log, quickstart.html,
# steps.jsonl: eight files at most), so a run that is stopped still leaves
# what it measured. DEADLINE_S (default 540) is the
# whole run's budget: a step that would start after it is skipped, and each
# step is given what is left (STEP_S caps one step, default 240). QUICKSTART_ARGS
# adds arguments to the quickstart's `retromae run` (e.g. "-p steps=300").
set -u
if [ $# -lt 3 ]; then
  echo "usage: sh scripts/gpu-node-check.sh ARCHIVE DATA OUT [STEP ...]" >&2
  exit 2
fi
archive=$1
data=$2
out=$3
shift 3
[ $# -gt 0 ] || set -- doctor bench:tiny:16x128 bench:mini:32x128 bench:base:32x512 quickstart bench:small:32x256 host
case "$data" in /*) ;; *) data="$PWD/$data" ;; esac
work=$(mktemp -d)
if [ -f "$data" ]; then
  # the data folder's two datasets as one archive (2 MB where the folder is 8)
  mkdir "$work/data" && tar -xJf "$data" -C "$work/data" || { echo "gpu-node-check: $data did not unpack; make it with tar -C ../shared/data -cJf data.tar.xz beir-scifact bert-base-uncased." >&2; exit 2; }
  data="$work/data"
fi
for d in beir-scifact bert-base-uncased; do
  if [ ! -d "$data/$d" ]; then
    echo "gpu-node-check: $data has no $d; pass the data folder (../shared/data) or an archive of it as the second argument." >&2
    rm -rf "$work"
    exit 2
  fi
done
mkdir -p "$out"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
start=$(date +%s)
deadline=${DEADLINE_S:-540}
step_cap=${STEP_S:-240}

if [ -d "$archive" ]; then
  app="$archive"
else
  tar -xJf "$archive" -C "$work" || { echo "gpu-node-check: $archive did not unpack; make it with npx retromae bundle." >&2; exit 2; }
  app="$work/retromae"
fi
retromae="$app/bin/retromae"
export RETROMAE_SHARED_DATA="$data"

# run NAME SECONDS COMMAND...: the command with what is left of the budget (at most SECONDS), its exit and time in steps.jsonl
run() {
  name=$1
  want=$2
  shift 2
  now=$(date +%s)
  left=$((deadline - (now - start)))
  if [ "$left" -lt 20 ]; then
    echo "{\"step\":\"$name\",\"skipped\":\"the run's budget (DEADLINE_S=$deadline) is spent\"}" >>"$out/steps.jsonl"
    return
  fi
  [ "$want" -lt "$left" ] || want=$left
  timeout -s KILL "$want" "$@"
  code=$?
  echo "{\"step\":\"$name\",\"exit\":$code,\"seconds\":$(($(date +%s) - now)),\"limit_s\":$want}" >>"$out/steps.jsonl"
}

for step in "$@"; do
  case "$step" in
    doctor)
      {
        echo "== nvidia-smi"; nvidia-smi -L 2>&1
        echo "== ldconfig"; (ldconfig -p 2>/dev/null || /sbin/ldconfig -p) | grep -E "libvulkan|libGLX_nvidia|libGLdispatch|libEGL_nvidia"
        for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d /usr/local/nvidia/vulkan/icd.d; do
          [ -d "$d" ] && { echo "== $d"; ls -l "$d"; }
        done
        echo "== env"; env | grep -E "^(NVIDIA_|VK_|LD_LIBRARY_PATH)" 
      } >"$out/machine.txt" 2>&1
      run doctor 90 sh "$retromae" doctor >"$out/doctor.txt" 2>&1
      run info 60 sh "$retromae" info >"$out/info.json" 2>>"$out/machine.txt"
      ;;
    bench:*)
      run "$step" "$step_cap" sh "$retromae" bench gpu --configs "${step#bench:}" --steps "${BENCH_STEPS:-10}" --probe-docs "${PROBE_DOCS:-all}" --child-timeout-s $((step_cap * 2 / 3)) >>"$out/bench-gpu.jsonl" 2>>"$out/bench-gpu.log"
      ;;
    host)
      run host 240 sh "$retromae" bench host --presets tiny,mini --steps 20 >>"$out/bench-gpu.jsonl" 2>>"$out/bench-gpu.log"
      ;;
    quickstart)
      nb="$app/app/notebooks/quickstart.ipynb"
      # on webgpu or not at all: a quickstart that fell back to the CPU would spend the budget and measure nothing
      # QUICKSTART_ARGS: more arguments for retromae run (-p steps=300 ...), split on spaces
      # shellcheck disable=SC2086
      RETROMAE_BACKEND=${RETROMAE_BACKEND:-webgpu} run quickstart "$step_cap" sh "$retromae" run "$nb" --out "$work/quickstart.out.ipynb" --html "$out/quickstart.html" ${QUICKSTART_ARGS:-} >"$out/quickstart.log" 2>&1
      ;;
    *)
      echo "gpu-node-check: unknown step \"$step\" (doctor, bench:PRESET:BxL, quickstart, host)." >&2
      ;;
  esac
done
rm -rf "$work"
echo "gpu-node-check: done in $(($(date +%s) - start)) s; $out holds the logs"
