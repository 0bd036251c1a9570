#!/usr/bin/env bash
# Compares kmsfs block seal/open throughput with `openssl speed` on this machine.
# Usage: bench/crypto_vs_openssl.sh BUILD_DIR   (BUILD_DIR holds bench/kmsfs_crypto_bench)
#
# Repetitions are randomly interleaved so a burst of other load on a shared machine
# smears over all rows instead of skewing one.
# Columns (MB/s = 10^6 bytes per CPU second):
#   openssl      `openssl speed -evp aes-256-gcm -bytes N`: one long GCM stream, no
#                per-message nonce/tag work: the ceiling for the raw cipher.
#   openssl-aead the same with -aead: per message IV + AAD + update + final + tag, i.e.
#                what plain 96-bit-nonce GCM costs per block.
#   evp-gcm      plain AES-256-GCM via EVP inside the benchmark binary (fixed key).
#   seal/open    kmsfs XAES-256-GCM and XChaCha20-Poly1305 (median of 3 repetitions).
set -euo pipefail

build=${1:?usage: $0 BUILD_DIR}
bin="$build/bench/kmsfs_crypto_bench"
[[ -x "$bin" ]] || { echo "error: $bin not found; build the kmsfs_crypto_bench target" >&2; exit 1; }
command -v openssl >/dev/null || { echo "error: openssl not in PATH" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 not in PATH" >&2; exit 1; }

sizes=(1024 4096 16384 65536)
secs=${SECONDS_PER_SIZE:-2}

echo "== machine"
echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2-)
have() { if grep -qw "$1" <<<"$flags"; then echo yes; else echo no; fi; }
echo "flags:   aes=$(have aes) vaes=$(have vaes) avx2=$(have avx2) pclmulqdq=$(have pclmulqdq) vpclmulqdq=$(have vpclmulqdq)"
echo "nproc:   $(nproc)"
echo "openssl: $(openssl version)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (other load skews every column alike)"
echo

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# -mr prints "+F:<idx>:<alg>:<bytes per second>".
openssl_rate() {
  openssl speed "$@" -evp aes-256-gcm -seconds "$secs" -mr 2>/dev/null | awk -F: '/^\+F:/ {print $4}'
}
for n in "${sizes[@]}"; do
  echo "openssl speed: $n bytes" >&2
  echo "$n $(openssl_rate -bytes "$n") $(openssl_rate -aead -bytes "$n")" >>"$tmp/openssl.txt"
done

echo "kmsfs_crypto_bench (3 repetitions)" >&2
"$bin" --benchmark_filter='^BM_(Seal|Open)/(aes-256-gcm|xchacha20-poly1305)/[0-9]+$|^BM_EvpGcmSeal/' \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_enable_random_interleaving=true \
  --benchmark_format=json --benchmark_out="$tmp/bench.json" --benchmark_out_format=json >/dev/null

python3 - "$tmp/openssl.txt" "$tmp/bench.json" <<'EOF'
import json, sys

ossl = {}
for line in open(sys.argv[1]):
    n, stream, aead = line.split()
    ossl[int(n)] = (float(stream), float(aead))

med = {}
for b in json.load(open(sys.argv[2]))["benchmarks"]:
    if b.get("aggregate_name") == "median":
        med[b["run_name"]] = b["bytes_per_second"]

def mb(v):
    return f"{v / 1e6:8.0f}"

hdr = ("block", "openssl", "openssl-aead", "evp-gcm", "xaes-seal", "xaes-open",
       "seal/openssl", "seal/aead", "seal/evp", "xchacha-seal", "xchacha-open")
print("== throughput, MB/s (median of 3)")
print(" ".join(f"{h:>12}" for h in hdr))
for n in sorted(ossl):
    stream, aead = ossl[n]
    seal = med[f"BM_Seal/aes-256-gcm/{n}"]
    opn = med[f"BM_Open/aes-256-gcm/{n}"]
    evp = med[f"BM_EvpGcmSeal/{n}"]
    row = (f"{n // 1024} KiB", mb(stream), mb(aead), mb(evp), mb(seal), mb(opn),
           f"{seal / stream:.2f}", f"{seal / aead:.2f}", f"{seal / evp:.2f}",
           mb(med[f"BM_Seal/xchacha20-poly1305/{n}"]), mb(med[f"BM_Open/xchacha20-poly1305/{n}"]))
    print(" ".join(f"{c:>12}" for c in row))

print()
print("== per-message cost of XAES over plain GCM (seal time - evp-gcm time)")
for n in sorted(ossl):
    extra_ns = (n / med[f"BM_Seal/aes-256-gcm/{n}"] - n / med[f"BM_EvpGcmSeal/{n}"]) * 1e9
    print(f"{n // 1024:>4} KiB: {extra_ns:6.0f} ns per seal")
EOF
