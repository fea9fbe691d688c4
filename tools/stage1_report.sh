#!/usr/bin/env bash
# Stage 1 end to end, timed: oracle demos -> `sefm sft` -> `sefm eval` (steps-to-go on separate
# held-out demos, then BC rollouts on held-out seeds). Prints the measures and each stage's time.
#
#   tools/stage1_report.sh                      # pretrained towers, the default task (point2block)
#   BACKBONE=scratch RUN=runs/stage1_scratch tools/stage1_report.sh   # reuses the same demos
#
# Environment: PY (python), DATA, TEST, RUN, EPISODES (200), TEST_EPISODES (60), EVAL (100 rollouts),
# FAMILIES, HOLD (resting frames after success), BACKBONE, CONFIG, SEED (training seed; default: the config's).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-data/stage1}
TEST=${TEST:-data/stage1_test}
RUN=${RUN:-runs/stage1}
EPISODES=${EPISODES:-200}
TEST_EPISODES=${TEST_EPISODES:-60}
EVAL=${EVAL:-100}
FAMILIES=${FAMILIES:-point2block}
HOLD=${HOLD:-10}
ORACLE_SPEED=${ORACLE_SPEED:-1.0}   # < 1: a slower demonstrator (sefm collect --oracle-speed)
BACKBONE=${BACKBONE:-pretrained}
CONFIG=${CONFIG:-src/sefm_bringup/config/sft_language_table.yaml}
SEED=${SEED:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SEFM="$PY -m sefm_bringup.cli"

clock() { date +%s; }
t0=$(clock)
# `sefm collect` appends to an existing data set: collect only what is missing.
[ -e "$DATA/meta.json" ] || $SEFM collect language_table "$DATA" --episodes "$EPISODES" --families "$FAMILIES" \
    --hold-steps "$HOLD" --seed 0 --oracle-speed "$ORACLE_SPEED"
# Held-out demos from a seed range the training demos never use.
[ -e "$TEST/meta.json" ] || $SEFM collect language_table "$TEST" --episodes "$TEST_EPISODES" --families "$FAMILIES" \
    --hold-steps "$HOLD" --seed 50000 --oracle-speed "$ORACLE_SPEED"
t1=$(clock)
$SEFM sft "$DATA" --config "$CONFIG" --run-dir "$RUN" --backbone "$BACKBONE" ${SEED:+--seed "$SEED"}
t2=$(clock)
$SEFM eval "$RUN/checkpoints/final" --dataset "$DATA" --run-dir "$RUN" --test-dataset "$TEST" \
    --episodes "$EVAL" --families "$FAMILIES" --json "$RUN/eval.json" | tee "$RUN/eval.txt"
t3=$(clock)
echo "wall clock: demos $((t1 - t0)) s, sft (tower features + training) $((t2 - t1)) s, eval $((t3 - t2)) s" \
    | tee -a "$RUN/eval.txt"
