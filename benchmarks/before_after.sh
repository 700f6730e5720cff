#!/usr/bin/env bash
# Speed of the existing paths before and after a change, in one run on one card:
# the encoder, the cached training step and predict, for an older revision and the working tree.
#
#   git archive REV src benchmarks | (mkdir -p .before && tar -x -C .before)   # where git is
#   bash benchmarks/before_after.sh [OUT]                                       # on the GPU machine
#
# .before/ is git-ignored; carry it to the GPU machine. Logs go to OUT (default $OUT or /tmp/before-after).
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/before-after}}
mkdir -p "$out"
[ -d .before/src ] || { echo "no .before/src: extract an older revision there first (see the header)"; exit 2; }
for bench in "bench_sam_encoder.py --no-compile --iters 10 --fp32-iters 1" \
             "bench_train_step.py --repeats 20 --baseline-repeats 1" \
             "bench_predict.py --config paper --device cuda --precision bf16 --batch-size 8 --images 48 --repeats 2 --skip-baseline"; do
  name=${bench%%.py*}
  for rev in before after; do
    root=.; [ "$rev" = before ] && root=.before
    echo "== $name ($rev)"
    # The scripts import odssam from PYTHONPATH first, so each revision runs its own code.
    env PYTHONPATH=$root/src timeout 120 python3 $root/benchmarks/$bench > "$out/$name.$rev.log" 2>&1
    tail -6 "$out/$name.$rev.log"
  done
done
