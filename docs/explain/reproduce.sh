#!/usr/bin/env bash
# Reproduces docs/explain.md: trains ResNet-20 and ResNet-18 on SIGNS at 64x64 on the CPU,
# runs the faithfulness checks on the 120 test images, and draws the example sheets.
# Run from the project root: bash docs/explain/reproduce.sh  (SIGNS=... to point elsewhere)
set -euo pipefail
SIGNS=${SIGNS:-../shared/data/signs}
RUNS=${RUNS:-runs/explain}
DOCS=docs/explain
train() {  # model, epochs
    resnetlab train --model "$1" --input-size 64 --data "$SIGNS/train_signs.h5" \
        --val-data "$SIGNS/test_signs.h5" --recipe modern --batch-size 32 --lr 0.05 --epochs "$2" \
        --out "$RUNS/$1"
}
train resnet20 20
train resnet18 15
resnetlab explain "$RUNS/resnet20/best.safetensors" "$SIGNS/test_signs.h5" --check --json \
    > "$DOCS/resnet20-checks.json"
resnetlab explain "$RUNS/resnet18/best.safetensors" "$SIGNS/test_signs.h5" --check --json \
    > "$DOCS/resnet18-checks.json"
# Two test images of each class, every method, for the figures.
examples=$(for c in 0 1 2 3 4 5; do ls "$SIGNS"/64x64_SIGNS/test_signs/"${c}"_* | head -2; done)
for method in gradcam gradcam++ layercam scorecam; do
    tr '\n' '\0' <<<"$examples" | xargs -0 resnetlab explain "$RUNS/resnet20/best.safetensors" \
        --method "$method" --out "$RUNS/cams-$method" > /dev/null
    cp "$RUNS/cams-$method/sheet.png" "$DOCS/resnet20-$method.png"
done
cp "$RUNS/resnet20/errors.png" "$DOCS/resnet20-errors.png"
# The table of docs/explain.md, from the raw JSON.
python - "$DOCS" <<'PY'
import json
import sys
from pathlib import Path

from resnetlab.explain.faithfulness import CheckRow, markdown

docs = Path(sys.argv[1])
lines = []
for model in ("resnet20", "resnet18"):
    rows = json.loads((docs / f"{model}-checks.json").read_text())["rows"]
    table = markdown([CheckRow(**row) for row in rows], model).splitlines()
    lines += table if not lines else table[2:]
(docs / "table.md").write_text("\n".join(lines) + "\n")
PY
