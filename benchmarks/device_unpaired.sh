#!/usr/bin/env bash
# The unpaired rows a 2-core CPU cannot train within a session, on a GPU machine, side by side (one process
# per row, all sharing the GPU), then merged into one record; and the CycleGAN training step on that GPU.
#
#   bash benchmarks/device_unpaired.sh LOGDIR STEPS ROW [ROW ...]
#
# Writes benchmarks/results/speed_cyclegan_gpu.json (run alone first, so nothing shares the GPU while it is
# timed), benchmarks/results/parts/unpaired_gpu_<row>.json per row and their merge
# benchmarks/results/unpaired_gpu.{json,md}; each process's log goes to LOGDIR. Rows: benchmarks/unpaired.py.
# ROW_TIMEOUT (s, default 3600) stops a row that runs longer at a step boundary, with last.pt written (SIGTERM), and
# that checkpoint is scored as it stood (EVAL_TIMEOUT, s, default 300; the record says the step). TAG (default gpu)
# names the parts, the merged record and the work folder of this run (unpaired_<TAG>...), so a second run does not
# merge the first run's parts; SPEED=0 skips the speed measurement; REQUIRE_GPU=0 lets it run on a CPU (a check);
# SET (one KEY=VALUE) is a recipe override for every row, e.g. SET=data.num_workers=2.
# Python: the machine's python3 with the packages of pyproject.toml importable (PYTHONPATH), or carried as wheels
# (benchmarks/device_wheels.sh; `carry: [".whl"]`), which this installs into /tmp/site; run from the repo root.
set -u
logs=$1; steps=$2; shift 2
mkdir -p "$logs" benchmarks/results/parts
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
wheels=${DEVICE_WHEELS:-.whl}  # the packages the device image lacks (benchmarks/device_wheels.sh), when carried
if [ -d "$wheels" ]; then
  mkdir -p /tmp/site
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl || exit 1
  for t in "$wheels"/*.tar.xz; do [ -e "$t" ] && { tar xJf "$t" -C /tmp/site || exit 1; }; done
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ "${REQUIRE_GPU:-1}" = 0 ] || python3 -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
# the data first, once: the row processes would otherwise each write it
python3 -c "from translate.data.phantom import write_phantom; write_phantom('data/phantom-unpaired', subjects=40, seed=0, unpaired=True)" || exit 1
tag=${TAG:-gpu}
[ "${SPEED:-1}" = 0 ] || timeout "${SPEED_TIMEOUT:-150}" python3 benchmarks/speed_cyclegan.py --device cuda --steps 20 \
  --out benchmarks/results/speed_cyclegan_gpu.json >"$logs/speed.log" 2>&1 || echo "speed: failed or timed out ($?)"
note="$# rows trained at once, one process each, sharing the GPU: wall times are not single-run times; run by: ${SET:+SET='$SET' }TAG=$tag ROW_TIMEOUT=${ROW_TIMEOUT:-3600} bash benchmarks/device_unpaired.sh $logs $steps $*"
for row in "$@"; do
  timeout -k 120 "${ROW_TIMEOUT:-3600}" python3 benchmarks/unpaired.py --rows "$row" --steps "$steps" --tta ${SET:+--set "$SET"} --machine-note "$note" \
    --out "benchmarks/results/parts/unpaired_${tag}_$row.json" --work "runs/unpaired-$tag" >"$logs/$row.log" 2>&1 &
done
wait
# a row that ROW_TIMEOUT stopped wrote last.pt at a step boundary (SIGTERM): score that checkpoint as it stood (its
# record's checkpoint_step and the markdown's "N of STEPS" say where it stopped; its wall time is the scoring's only)
for row in "$@"; do
  part="benchmarks/results/parts/unpaired_${tag}_$row.json"
  if [ ! -f "$part" ] && [ -f "runs/unpaired-$tag/$row/checkpoints/last.pt" ]; then
    timeout "${EVAL_TIMEOUT:-300}" python3 benchmarks/unpaired.py --rows "$row" --steps "$steps" --tta --reuse ${SET:+--set "$SET"} \
      --machine-note "$note; $row stopped by ROW_TIMEOUT, scored as it stood" --out "$part" --work "runs/unpaired-$tag" \
      >>"$logs/$row.log" 2>&1 || echo "$row: scoring the stopped run failed ($?)"
  fi
done
parts=(); for row in "$@"; do parts+=("benchmarks/results/parts/unpaired_${tag}_$row.json"); done
python3 benchmarks/unpaired.py --merge "${parts[@]}" --work "runs/unpaired-$tag" \
  --machine-note "$note" --out "benchmarks/results/unpaired_$tag.json"
