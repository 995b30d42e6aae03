#!/usr/bin/env bash
# Install sdt3-event and its dependencies without ever swapping the installed torch build.
#
#   bash scripts/install.sh cpu   # CPU machine: torch 2.13.0 CPU build, then the project (editable, [dev])
#   bash scripts/install.sh gpu   # GPU machine: keep the CUDA torch you installed ([dev])
#
# Why: spikingjelly 2.0 declares torchvision and torchaudio as hard requirements. No torchaudio release
# matches torch 2.13, and PyPI's torchvision does not import beside a CPU torch, so resolving them would
# replace torch with a multi-GB CUDA build. sdt3-event never imports either package, so spikingjelly is
# installed without its declared dependencies and its real runtime needs are listed in pyproject.toml.
set -euo pipefail
mode=${1:-cpu}
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
case "$mode" in
  cpu)
    if ! "$py" -c 'import torch' 2>/dev/null; then
      "$py" -m pip install "torch==2.13.0"
    fi
    extras="dev" ;;
  gpu)
    "$py" -c 'import torch' 2>/dev/null || {
      echo "install a CUDA build of torch first (see README), then rerun: bash scripts/install.sh gpu" >&2
      exit 1
    }
    extras="dev" ;;  # GPU neuron kernels are spikingjelly 2.0's Triton ones; cupy is not needed
  *) echo "usage: bash scripts/install.sh [cpu|gpu]" >&2; exit 2 ;;
esac
pin=$(mktemp)
trap 'rm -f "$pin"' EXIT
# Pin whatever torch build is installed now (CPU or CUDA) for every later resolution.
"$py" -c 'import torch; print(f"torch=={torch.__version__}")' >"$pin"
echo "keeping $(cat "$pin")"
"$py" -m pip install --no-deps "spikingjelly==2.0.0"
"$py" -m pip install -c "$pin" -e ".[$extras]"
# The install is editable: the sdt3-event command runs the code in this folder. Name a command on
# PATH that is not this one (another Python's, or a stale install whose folder was moved or deleted,
# which stops every command with "No module named 'sdt3_event'") now rather than at first use.
here=$(pwd -P)
scripts=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
echo "sdt3-event installed from $here (in $scripts); rerun this script if you move the folder"
cli=$(command -v sdt3-event || true)
if [ -z "$cli" ]; then
  echo "note: sdt3-event is not on PATH; run $scripts/sdt3-event or add $scripts to PATH" >&2
elif ! version=$(sdt3-event --version 2>/dev/null) || [ "${version##* from }" != "$here/sdt3_event" ]; then
  echo "warning: the sdt3-event first on PATH ($cli) does not run this install" \
    "(${version:-it cannot import sdt3_event}); use $scripts/sdt3-event or put $scripts first on PATH" >&2
fi
