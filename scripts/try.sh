#!/usr/bin/env bash
# Quick start, part 1: set up (scripts/setup.sh), then run the smoke study on this machine and report it.
# About a minute on 2 CPU cores once installed; results go to results/ (smoke.md, smoke.html, sweep.db).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

echo "== sweep launch --study smoke --executor local --parallel 2"
sweep launch --study smoke --executor local --parallel 2
echo "== sweep report --study smoke"
sweep report --study smoke
echo "== done: results/smoke.md (the table above) and results/smoke.html (its plots)"
