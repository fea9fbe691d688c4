#!/usr/bin/env bash
# Stage 1 end to end, timed: oracle demos -> `sefm sft` -> `sefm eval` (steps-to-go on separate
# held-out demos, then BC rollouts on held-out seeds). Prints the measures and each stage's time.
#
#   experiments/stage1_report.sh                      # pretrained towers, the default task (point2block)
#   BACKBONE=scratch RUN=runs/stage1_scratch experiments/stage1_report.sh   # reuses the same demos
#   STG_INPUT=trunk SEED=0 experiments/stage1_report.sh   # steps-to-go from the trunk, as docs/stage1.md's
#                                                          # "Sub-cell pointer targets" table measured it
#
# Environment: PY (python), DATA, TEST, RUN, EPISODES (200), TEST_EPISODES (60), EVAL (100 rollouts),
# FAMILIES, HOLD (resting frames after success), BACKBONE, CONFIG, SEED (training seed) and STG_INPUT
# (trunk | pointer: what the steps-to-go head reads); SEED and STG_INPUT default to the config's.
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
STG_INPUT=${STG_INPUT:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SEFM="$PY -m sefm_cli.cli"

clock() { date +%s; }
t0=$(clock)
# A data set is complete once it has been renamed from DIR.partial to DIR (after `sefm collect` succeeded):
# an interrupted collection is removed and redone, never trained on.
collect() {  # DIR EPISODES SEED_RANGE
    if [ -e "$1" ]; then echo "[collect] $1 complete; reused"; return; fi
    if [ -e "$1.partial" ]; then echo "[collect] $1.partial is an interrupted collection: removed, redoing"; rm -rf "$1.partial"; fi
    $SEFM collect language_table "$1.partial" --episodes "$2" --families "$FAMILIES" --hold-steps "$HOLD" \
        --seeds "$3" --oracle-speed "$ORACLE_SPEED"
    mv "$1.partial" "$1"
}
collect "$DATA" "$EPISODES" train_demos
collect "$TEST" "$TEST_EPISODES" test_demos   # held-out demos: the seed plan's test range
t1=$(clock)
# Stage 1 resumes an interrupted run from its latest checkpoint (a finished one is trained again).
$SEFM sft "$DATA" --config "$CONFIG" --run-dir "$RUN" --backbone "$BACKBONE" ${SEED:+--seed "$SEED"} \
    ${STG_INPUT:+--stg-input "$STG_INPUT"} \
    $([ -e "$RUN/checkpoints/latest" ] && [ ! -e "$RUN/checkpoints/final" ] && echo --resume)
t2=$(clock)
$SEFM eval "$RUN/checkpoints/final" --dataset "$DATA" --run-dir "$RUN" --test-dataset "$TEST" \
    --episodes "$EVAL" --families "$FAMILIES" --json "$RUN/eval.json" | tee "$RUN/eval.txt"
t3=$(clock)
echo "wall clock: demos $((t1 - t0)) s, sft (tower features + training) $((t2 - t1)) s, eval $((t3 - t2)) s" \
    | tee -a "$RUN/eval.txt"
