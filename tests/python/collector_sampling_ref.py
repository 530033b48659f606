"""Reference implementation of the OpenTelemetry Collector's probabilistic_sampler (hash_seed
mode), written independently of meshtrace's Rust code, standard library only.

Usage: collector_sampling_ref.py SEED PERCENT [MODE] < trace_ids.txt
Reads one 32-hex-digit trace id per line; prints the ids the OTel algorithm keeps, one a line.
MODE is hash_seed (default) or proportional (spans arriving without tracestate).

hash_seed mode (processor/probabilisticsamplerprocessor in opentelemetry-collector-contrib):
  hash  = FNV-1a 32 over the seed as 4 little-endian bytes, then the 16 trace-id bytes
  scaled = uint32(float32(percent) * float32(16384 / 100))   -- float32 multiply, truncated
  keep  iff (hash & 0x3FFF) < scaled
A float32 product is computed here as the exact double product of two float32 values rounded
once to float32 (exact: 24+24 significant bits fit in a double's 53), which is IEEE float32
multiplication.

proportional mode (W3C/OTel consistent probability sampling, no incoming th/rv):
  ratio      = float64(float32(percent)) / 100
  randomness = the trace id's last 7 bytes (56 bits)
  threshold  = 2^56 - round(ratio * 2^56), rounded to 4 significant hex digits (after the
               leading zero digits the value needs), round half up on the dropped digits
  keep iff randomness >= threshold
"""
import math
import struct
import sys

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a32(data):
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def scaled_rate(percent):
    pct = min(f32(percent), 100.0)
    return int(f32(f32(pct) * f32(16384 / 100)))


MAX56 = 1 << 56


def w3c_threshold(ratio, precision=4):
    if ratio >= 1:
        return 0
    reject = MAX56 - int(math.floor(ratio * MAX56 + 0.5))
    r = 1 - ratio
    while r * 16 < 1:
        r *= 16
        precision += 1
    shift = 4 * (14 - precision)
    if shift <= 0:
        return reject
    half = 1 << (shift - 1)
    return ((reject + half) >> shift) << shift


def main():
    seed = int(sys.argv[1])
    percent = float(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "hash_seed"
    scaled = scaled_rate(percent)
    threshold = w3c_threshold(min(f32(percent), 100.0) / 100)
    seed_bytes = struct.pack("<I", seed)
    out = []
    for line in sys.stdin:
        tid = line.strip()
        if not tid:
            continue
        if mode == "proportional":
            if int(tid[18:], 16) >= threshold:
                out.append(tid)
            continue
        h = fnv1a32(seed_bytes + bytes.fromhex(tid))
        if (h & 0x3FFF) < scaled:
            out.append(tid)
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


if __name__ == "__main__":
    main()
