#!/usr/bin/env bash
# Installs what Proto Balance needs to build, run and test, from Debian 12 packages only.
# Idempotent: packages already present are skipped, and apt-get update runs at most once.
# Usage: tools/install-deps.sh [--bench]   (--bench adds HAProxy, nginx, wrk, iperf3 for tools/bench)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev libboost-json1.81-dev libboost-regex1.81-dev
  libsqlite3-dev libsqlitecpp-dev sqlite3
  prometheus-cpp-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev
  libsodium-dev libmuparser-dev libsnmp-dev libhiredis-dev
  libncurses-dev   # pbadmin top
  redis-server  # tests only: a real Redis per twin link test fixture
  libgtest-dev libgmock-dev
  libssl-dev  # tests only: real TLS ClientHellos in pb_test_net
  clang-14 libclang-rt-14-dev  # the fuzz preset (libFuzzer)
  snmpd snmp prometheus curl netcat-openbsd procps python3
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(haproxy nginx libnginx-mod-stream wrk iperf3 util-linux)
fi

missing=()
for p in "${packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

# Packages such as snmpd, prometheus and nginx start their daemons on install; the tests and the
# benchmark start their own instances on loopback, so keep the system ones from starting.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
trap '[[ $made_policy -eq 1 ]] && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
