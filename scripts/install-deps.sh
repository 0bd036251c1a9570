#!/usr/bin/env bash
# Installs everything kmsfs needs to build and to run its tests, from Debian 12 packages.
# Idempotent; needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "install-deps.sh: run as root" >&2; exit 1; fi

BUILD=(cmake ninja-build g++ pkg-config
       scdoc  # the man pages (packaging/man)
       binutils  # objcopy: the installed binary stripped, its debug info split off
       libfuse3-dev fuse3 libssl-dev openssl libsodium-dev libcurl4-openssl-dev
       nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsystemd-dev
       libcpp-httplib-dev)  # tools/kms-local: Debian's split build, with OpenSSL (TLS) compiled in
TEST=(libgtest-dev libgmock-dev googletest librapidcheck-dev libbenchmark-dev
      python3 xxd
      systemd  # systemd-analyze verify/security (tests/systemd)
      # tests/integration/apps_test.cc and powerloss_test.cc (losetup is in mount)
      sqlite3 git rsync tar diffutils xfsprogs mount
      e2fsprogs  # mkfs.ext4: the small, nearly full backing store (enospc_test, soak_test)
      libcap2-bin  # setcap/getcap: file capabilities through the mount
      # tests/kms_local: independent KMS clients against tools/kms-local, and curl
      awscli python3-boto3 curl
      # the mount's Prometheus endpoint, parsed by a parser we did not write
      python3-prometheus-client
      gdb  # tests/integration/secrets_test.cc: gcore of a live daemon; the split debug info
      # tests/packaging and scripts/deb-check.sh: man pages rendered and found, the completion
      # sourced, the .deb built (dpkg-shlibdeps) and installed
      man-db bash-completion dpkg-dev file
      # scripts/fuzz.sh: libFuzzer targets (clang's compiler-rt), cached builds
      clang-14 libclang-rt-14-dev ccache)

missing=()
for p in "${BUILD[@]}" "${TEST[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
