#!/usr/bin/env bash
# The learners' checkpoints that ship in checkpoints/ and that `mfrm demo` starts its learners from.
#
#   scripts/train-checkpoints.sh        train both learners again and replace the shipped files
#
# Each learner is trained by `mfrm train` on the training window of scenarios/paper-12.yaml (minutes
# 480-720 of the shipped sample; the demo plays the evaluation window, minutes 720-960), two episodes,
# seed 0, as the evaluation suite's learners are: the staffing action scheme and the operator's
# reward at alpha 0.3. Training is deterministic for a seed: a rerun on the same versions of numpy
# and torch gives the same files. Each checkpoint's .run.json records the command, the settings and
# the versions it was made with. About a minute per learner on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=checkpoints/paper-12
mkdir -p "$out"
for policy in nac-linear nac-nn; do
  python -m controller train --policy "$policy" --scenario scenarios/paper-12.yaml --episodes 2 --seed 0 \
    --set reward.kind=operator --set reward.alpha=0.3 --set "policy.params.$policy.scheme=staffing" \
    --out "$out/$policy.ckpt.npz" --overwrite --no-plots
  rm -f "$out/$policy.ckpt.diagnostics.csv"
  # The record names the trace folder by this clone's path: keep it relative to the repository.
  python - "$out/$policy.ckpt.run.json" <<'PY'
import pathlib
import sys
record = pathlib.Path(sys.argv[1])
record.write_text(record.read_text().replace(str(pathlib.Path.cwd()) + "/", ""))
PY
done
