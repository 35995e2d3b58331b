#!/usr/bin/env bash
# Installs every dependency of ghscale on Debian bookworm (as root; only what
# is missing, so running it again is cheap) and builds into ./build.
# Extra CMake arguments: GHSCALE_CMAKE_ARGS="-DGHSCALE_WERROR=ON" ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"

packages=(g++ cmake ninja-build python3 libcaf-dev libtomlplusplus-dev
          rapidjson-dev libgtest-dev libgmock-dev libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# shellcheck disable=SC2086 # GHSCALE_CMAKE_ARGS is a list of arguments
cmake -S . -B build -G Ninja ${GHSCALE_CMAKE_ARGS:-}
cmake --build build
