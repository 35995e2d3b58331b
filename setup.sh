#!/usr/bin/env bash
# Installs every dependency of ghscale on Debian bookworm (as root; only what
# is missing, so running it again is cheap): the Debian packages, and the npm
# test peers in tests/peers (prism, GitHub's OpenAPI description, the AWS
# SigV4 test suite); then builds into ./build. moto, boto3 and cryptography
# for the integration tests come with the machine's python3.
# Extra CMake arguments: GHSCALE_CMAKE_ARGS="-DGHSCALE_WERROR=ON" ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"

# libsqlite3-dev: the durable embedded queue; libhowardhinnant-date-dev and
# tzdata: idle schedules in IANA timezones; libboost-dev: Boost.Beast, the
# bounded HTTP listener; python3-prometheus-client: the tests' strict parser
# of the /metrics page (Debian's /usr/bin/python3).
packages=(g++ cmake ninja-build python3 libcaf-dev libtomlplusplus-dev
          rapidjson-dev libcurl4-openssl-dev libssl-dev libpugixml-dev
          libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev
          libsqlite3-dev libhowardhinnant-date-dev tzdata libboost-dev
          python3-prometheus-client)
command -v npm >/dev/null || packages+=(nodejs npm)
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

# The lock file pins every npm peer; an unchanged lock installs nothing.
if [ ! -f tests/peers/node_modules/.package-lock.json ] \
   || ! cmp -s tests/peers/package-lock.json tests/peers/node_modules/.ghscale-lock; then
  echo "setup: installing the npm test peers"
  npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error
  cp tests/peers/package-lock.json tests/peers/node_modules/.ghscale-lock
fi

# shellcheck disable=SC2086 # GHSCALE_CMAKE_ARGS is a list of arguments
cmake -S . -B build -G Ninja ${GHSCALE_CMAKE_ARGS:-}
cmake --build build
