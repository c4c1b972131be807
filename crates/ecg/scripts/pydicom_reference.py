"""Writes tests/data/dicom/pydicom_reference.json: pydicom's decoding of waveform_ecg.dcm (values in uV) at a
few sample positions plus per-lead sums, so that the Rust reader is checked against an independent decoder.

Run: python3 scripts/pydicom_reference.py  (needs `pip install pydicom numpy`)
"""
import json, os
import pydicom

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "..", "tests", "data", "dicom", "waveform_ecg.dcm")
ds = pydicom.dcmread(path)
out = {"groups": []}
for gi, item in enumerate(ds.WaveformSequence):
    arr = ds.waveform_array(gi)  # (samples, channels), physical units (uV here)
    labels = [c.ChannelSourceSequence[0].CodeMeaning for c in item.ChannelDefinitionSequence]
    positions = [0, 1, 250, arr.shape[0] // 2, arr.shape[0] - 1]
    out["groups"].append({
        "label": item.MultiplexGroupLabel,
        "fs": float(item.SamplingFrequency),
        "samples": int(arr.shape[0]),
        "leads": labels,
        "positions": positions,
        "values_uV": [[float(arr[p, c]) for p in positions] for c in range(arr.shape[1])],
        "sums_uV": [float(arr[:, c].sum()) for c in range(arr.shape[1])],
    })
with open(os.path.join(here, "..", "tests", "data", "dicom", "pydicom_reference.json"), "w") as f:
    json.dump(out, f, indent=1)
