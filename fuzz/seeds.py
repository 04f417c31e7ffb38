#!/usr/bin/env python3
"""Regenerates the raw seed corpora from the shared data; `cargo fuzz cmin`
then keeps the inputs that add coverage (see README.md).

    python3 seeds.py [DATA_DIR]   # default ../../shared/data, or $EDGEFWD_DATA
"""
import hashlib, os, struct, sys
from pathlib import Path

here = Path(__file__).resolve().parent
data = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("EDGEFWD_DATA", here / "../../shared/data"))


def frames(path):
    """Yields the captured bytes of every record of a pcap or pcapng file."""
    b = path.read_bytes()
    if len(b) < 24:
        return
    magic = b[:4]
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng: walk blocks, yield EPB data
        endian = "<" if b[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        off = 0
        while off + 12 <= len(b):
            btype, blen = struct.unpack_from(endian + "II", b, off)
            if blen < 12 or off + blen > len(b):
                return
            if btype == 6:
                caplen = struct.unpack_from(endian + "I", b, off + 20)[0]
                yield b[off + 28 : off + 28 + caplen]
            off += blen
        return
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        return
    off = 24
    while off + 16 <= len(b):
        caplen = struct.unpack_from(endian + "I", b, off + 8)[0]
        yield b[off + 16 : off + 16 + caplen]
        off += 16 + caplen


def put(target, blob):
    d = here / "corpus-raw" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(blob).hexdigest()).write_bytes(blob)


captures = sorted(p for p in (data / "pcap").rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
for cap in captures:
    for i, f in enumerate(frames(cap)):
        put("router_process", bytes([i % 3]) + f)  # first byte: ingress port
    if cap.stat().st_size <= 4096:
        put("trace_read", cap.read_bytes())
for cfg in [here / "../control/demo/appliance.toml"]:
    put("config_parse", cfg.read_bytes())
print("raw seeds in", here / "corpus-raw")
