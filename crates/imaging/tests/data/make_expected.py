"""Regenerates expected_pixels.json: the reference decoding of each fixture by pydicom.

Run: python3 make_expected.py   (needs pydicom 3, numpy, pylibjpeg, pylibjpeg-libjpeg,
pylibjpeg-openjpeg; pydicom-data for RG1_UNCR when regenerating the MONOCHROME1 fixture).

For each file and frame 0 it records the stored pixel values pydicom returns (colour as RGB),
summarised as sum/min/max, a SHA-256 of the values as little-endian int64, and 64 sampled values;
and the 8-bit display rendering computed here with numpy from pydicom's modality LUT output,
following PS3.3 C.11.2.1.2.1 (linear window; dataset window or the full range), inverted for
MONOCHROME1.
"""
import hashlib
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

HERE = os.path.dirname(os.path.abspath(__file__))
PIXELS = os.path.join(HERE, "pixels")

# Lossy codecs may round differently in different decoders; these get a tolerance.
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91",
         "1.2.840.10008.1.2.4.81"}


def make_monochrome1():
    """A small MONOCHROME1 fixture: pydicom-data's RG1_UNCR chest CR subsampled by 8."""
    out = os.path.join(PIXELS, "RG1_UNCR_subsampled.dcm")
    if os.path.exists(out):
        return
    from pydicom.data import get_testdata_file
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    arr = ds.pixel_array[::8, ::8].copy()
    ds.Rows, ds.Columns = arr.shape
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(out)


def frame0(ds):
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    return arr


def render(ds, arr):
    values = apply_modality_lut(arr, ds).astype(np.float64).ravel()
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    if wc is not None and ww is not None:
        c = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        w = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
    else:
        lo, hi = values.min(), values.max()
        c, w = (lo + hi + 1) / 2, max(hi - lo + 1, 1)
    low = c - 0.5 - (w - 1) / 2
    high = c - 0.5 + (w - 1) / 2
    y = np.where(values <= low, 0.0,
                 np.where(values > high, 255.0, ((values - (c - 0.5)) / max(w - 1, 1) + 0.5) * 255))
    # Round half away from zero, like Rust's f64::round.
    y = np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    return y


def main():
    make_monochrome1()
    cases = []
    for name in sorted(os.listdir(PIXELS)):
        path = os.path.join(PIXELS, name)
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        case = {"file": name, "transfer_syntax": ts,
                "photometric": str(ds.get("PhotometricInterpretation", "")),
                "rows": int(ds.Rows), "columns": int(ds.Columns),
                "frames": int(ds.get("NumberOfFrames", 1) or 1),
                "samples_per_pixel": int(ds.get("SamplesPerPixel", 1))}
        try:
            arr = frame0(ds)
        except Exception as e:  # pydicom cannot decode it either: the test expects an error
            case["pydicom_error"] = str(e).splitlines()[0]
            cases.append(case)
            continue
        flat = arr.astype(np.int64).ravel()
        case["lossy"] = ts in LOSSY
        case["sum"] = int(flat.sum())
        case["min"] = int(flat.min())
        case["max"] = int(flat.max())
        case["sha256"] = hashlib.sha256(flat.astype("<i8").tobytes()).hexdigest()
        idx = np.linspace(0, flat.size - 1, 64).astype(np.int64)
        case["sample_index"] = idx.tolist()
        case["sample_value"] = flat[idx].tolist()
        if case["samples_per_pixel"] == 1:
            r = render(ds, arr)
            case["render_sha256"] = hashlib.sha256(r.tobytes()).hexdigest()
            case["render_sum"] = int(r.astype(np.int64).sum())
        cases.append(case)
    with open(os.path.join(HERE, "expected_pixels.json"), "w") as f:
        json.dump({"generator": "pydicom " + pydicom.__version__, "cases": cases}, f, indent=1)
    print(len(cases), "cases", file=sys.stderr)


if __name__ == "__main__":
    main()
