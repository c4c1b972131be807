"""Writes tests/data/scp/waveform_ecg.scp: the 12-lead rhythm data of pydicom's waveform_ecg.dcm as an
SCP-ECG (EN 1064 / ISO 11073-91064) record. No public SCP-ECG example is reachable from this project's build
machines, so the record is written here from the standard's structure: record CRC and size; Section 0
(pointers), Section 1 (header: only the mandatory end tag, no patient data), Section 2 (Huffman tables:
19999 = the standard's default table), Section 3 (lead definitions) and Section 6 (rhythm data, second
differences, Huffman-encoded with the default table). CRCs are CRC-CCITT (poly 0x1021, init 0xFFFF).

This encoder is written independently of the Rust decoder so that the two check each other.
Run: python3 scripts/make_scp_fixture.py   (needs `pip install pydicom numpy`)
     python3 scripts/make_scp_fixture.py LEADS SAMPLES OUT   writes a small record (e.g. a fuzzing seed).
"""
import os
import struct
import sys

import pydicom

here = os.path.dirname(os.path.abspath(__file__))
ds = pydicom.dcmread(os.path.join(here, "..", "tests", "data", "dicom", "waveform_ecg.dcm"))
item = ds.WaveformSequence[0]
raw = ds.waveform_array(0)  # physical uV, exact multiples of 1.25 uV
out_path = os.path.join(here, "..", "tests", "data", "scp", "waveform_ecg.scp")
if len(sys.argv) == 4:
    raw = raw[: int(sys.argv[2]), : int(sys.argv[1])]
    out_path = sys.argv[3]
sens_nv = 1250
fs = int(float(item.SamplingFrequency))
n, nleads = raw.shape
# SCP-ECG lead codes (EN 1064 Table 41).
LEAD_IDS = [1, 2, 61, 62, 63, 64, 3, 4, 5, 6, 7, 8]  # I II III aVR aVL aVF V1..V6


def crc_ccitt(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value, nbits):
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                self.acc = 0
                self.n = 0

    def finish(self):
        if self.n:
            self.out.append(self.acc << (8 - self.n))
            self.acc = 0
            self.n = 0
        return bytes(self.out)


def huffman_default(values):
    """Encodes with the standard's default Huffman table: 0 -> '0'; +-k for k in 1..8 -> k ones, a zero and a
    sign bit (1 -> '100', -1 -> '101', ..., -8 -> '1111111101'); otherwise '1111111110' + 8-bit or
    '1111111111' + 16-bit two's complement value."""
    b = Bits()
    for v in values:
        a = abs(v)
        if v == 0:
            b.put(0b0, 1)
        elif a <= 8:
            # k ones, a zero, then the sign bit: 1 -> 100/101, 2 -> 1100/1101, ..., 8 -> 1111111100/...01
            prefix = ((1 << a) - 1) << 1  # a ones then a zero
            b.put((prefix << 1) | (1 if v < 0 else 0), a + 2)
        elif -128 <= v <= 127:
            b.put(0b1111111110, 10)
            b.put(v & 0xFF, 8)
        else:
            assert -32768 <= v <= 32767
            b.put(0b1111111111, 10)
            b.put(v & 0xFFFF, 16)
    return b.finish()


def section(sid, body, version=20):
    length = 16 + len(body)
    head_rest = struct.pack("<HIBB", sid, length, version, version) + (b"SCPECG" if sid == 0 else b"\0" * 6)
    crc = crc_ccitt(head_rest + body)
    return struct.pack("<H", crc) + head_rest + body


leads = []
for c in range(nleads):
    x = [int(round(v * 1000 / sens_nv)) for v in raw[:, c]]
    d = [x[0], x[1]] + [x[i] - 2 * x[i - 1] + x[i - 2] for i in range(2, n)]
    leads.append(huffman_default(d))

s1 = section(1, struct.pack("<BH", 255, 0))  # tag 255 = end of header, length 0
s2 = section(2, struct.pack("<H", 19999))
s3_body = struct.pack("<BB", nleads, (nleads << 3) | 0b100)  # simultaneous: bit 2, count in bits 3..7
for lid in LEAD_IDS[:nleads]:
    s3_body += struct.pack("<IIB", 1, n, lid)
s3 = section(3, s3_body)
s6_body = struct.pack("<HHBB", sens_nv, 1_000_000 // fs, 2, 0)
s6_body += b"".join(struct.pack("<H", len(l)) for l in leads)
s6_body += b"".join(leads)
s6 = section(6, s6_body)

present = {1: s1, 2: s2, 3: s3, 6: s6}
# Section 0 lists sections 0..11 (absent ones with length 0 and index 0); offsets are 1-based in the record.
ptr_count = 12
s0_len = 16 + 10 * ptr_count
pos = 6 + s0_len + 1
pointers = b"".join([])
layout = []
index = {}
for sid in range(ptr_count):
    if sid == 0:
        index[sid] = (s0_len, 7)
    elif sid in present:
        index[sid] = (len(present[sid]), pos)
        pos += len(present[sid])
    else:
        index[sid] = (0, 0)
s0_body = b"".join(struct.pack("<HII", sid, *index[sid]) for sid in range(ptr_count))
s0 = section(0, s0_body)
body = s0 + b"".join(present[k] for k in sorted(present))
size = 6 + len(body)
rest = struct.pack("<I", size) + body
record = struct.pack("<H", crc_ccitt(rest)) + rest
with open(out_path, "wb") as f:
    f.write(record)
print(len(record), "bytes")
