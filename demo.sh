#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST: install, prepare the images, train, evaluate, index, search.
# Training runs 5 epochs here (not the default 60) so the whole job fits in about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
.venv/bin/python prepare_dataset.py fashion-mnist
.venv/bin/python train.py --epochs "${EPOCHS:-5}"
.venv/bin/python evaluate.py --model output/autoencoder.keras
.venv/bin/python index_dataset.py --model output/autoencoder.keras --index output/features.pkl
.venv/bin/python search.py --model output/autoencoder.keras --index output/features.pkl --sample 3 > output/search_results.tsv
echo "done: see output/ (query_*.jpg, results_*.jpg, reconstructions.png, training_loss.png, search_results.tsv)" >&2
