# Shared start of the prepared GPU sessions (sourced by gpu_sure.sh and gpu_defaults.sh):
# the environment, OUT and DEVICE, the card and PyTorch recorded in OUT/stages.txt, and
# stage SECONDS NAME COMMAND..., which runs COMMAND under a time limit into OUT/NAME.txt and
# shows its last TAIL lines.
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/out}"; mkdir -p "$OUT"
DEVICE="${DEVICE:-cuda}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/stages.txt"
python3 -c "import torch; print('torch', torch.__version__)" 2>&1 | tee -a "$OUT/stages.txt"
stage() {  # stage SECONDS NAME COMMAND...
    local limit=$1 name=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "stage $name: exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/stages.txt"
    tail -n "${TAIL:-12}" "$OUT/$name.txt"
}
