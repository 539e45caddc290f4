#!/usr/bin/env bash
# The main job: several processes share one dict (see examples/demo.py).
source "$(dirname "$0")/_venv.sh"
PYTHONPATH=src python examples/demo.py "$@"
