#!/usr/bin/env python3
"""Writes the Aperio JPEG 2000 fixtures of crates/imaging/tests/data/wsi.

pip install tifffile imagecodecs numpy pillow pydicom   (tested: tifffile 2026.3.3, imagecodecs
2026.3.6 with OpenJPEG 2.5.4, Pillow 13.0.0, pydicom 3.0.2; pydicom only because the drawing is
imported from make_wsi_fixtures.py)

No small public Aperio slide with JPEG 2000 tiles was found (OpenSlide's CMU-1-JP2K-33005.svs is
over 100 MB and not on PyPI; the openslide-python sdist, tiffslide and wsidicom-data hold none), so
these are drawn here, laid out as Aperio lays them out: IFD 0 is level 0 (tiled, "Aperio Image
Library" description), IFD 1 a stripped thumbnail, IFDs 2 and 3 the lower levels; every tile is a
bare JPEG 2000 codestream (SOC FF4F, SIZ FF51 ...), lossy (9/7 irreversible wavelet) as Aperio
writes them, in 240x240 tiles (Aperio's usual size), edge tiles padded with white.

- aperio-jp2k-33005.svs    Compression 33005 (Aperio "JP2K RGB"): the codestream's multiple-component
                           transform is on, so a decoder hands back R, G, B.
- aperio-jp2k-33003.svs    Compression 33003 (Aperio "JP2K YCbCr"): the tiles hold Y, Cb, Cr (full
                           range, JFIF / BT.601 coefficients) with the codestream's transform off;
                           the reader must convert to RGB itself, as OpenSlide does.
- jp2k-33005-level0.png,   Level 0 of each as decoded by an independent decoder (imagecodecs, i.e.
  jp2k-33003-level0.png    the OpenJPEG C library; for 33003 its Y, Cb, Cr converted to RGB here in
                           floating point and rounded). The Rust test compares every Deep Zoom
                           tile of level 0 against these.
"""

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from make_wsi_fixtures import halve, reference

W, H, T = 600, 400, 240


def tiles(a):
    out = []
    for ty in range(0, a.shape[0], T):
        for tx in range(0, a.shape[1], T):
            t = np.full((T, T, 3), 255, np.uint8)
            part = a[ty : ty + T, tx : tx + T]
            t[: part.shape[0], : part.shape[1]] = part
            out.append(t)
    return out


def assemble(decoded_tiles, w, h):
    out = np.zeros((h, w, 3), np.uint8)
    across = -(-w // T)
    for i, t in enumerate(decoded_tiles):
        ty, tx = divmod(i, across)
        part = out[ty * T : ty * T + T, tx * T : tx * T + T]
        part[:] = t[: part.shape[0], : part.shape[1]]
    return out


def rgb_to_ycbcr(a):
    r, g, b = (a[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def ycbcr_to_rgb(a):
    y, cb, cr = (a[..., i].astype(np.float64) for i in range(3))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def encode(t, ycbcr):
    # Lossy like Aperio's (its Q=30..70); level is imagecodecs' quality setting (PSNR, dB).
    return imagecodecs.jpeg2k_encode(
        rgb_to_ycbcr(t) if ycbcr else t,
        level=45,
        codecformat="J2K",
        reversible=False,
        mct=not ycbcr,
    )


def decode(stream, ycbcr):
    d = imagecodecs.jpeg2k_decode(stream)
    assert d.shape == (T, T, 3) and d.dtype == np.uint8
    return ycbcr_to_rgb(d) if ycbcr else d


def write(name, compression, levels, ycbcr):
    level0 = None
    with tifffile.TiffWriter(name) as tif:
        for i, lv in enumerate(levels):
            streams = [encode(t, ycbcr) for t in tiles(lv)]
            assert all(s[:4] == b"\xff\x4f\xff\x51" for s in streams)
            if i == 0:
                level0 = assemble([decode(s, ycbcr) for s in streams], W, H)
            kind = "J2K/YUV16" if ycbcr else "J2K/KDU"
            desc = (
                f"Aperio Image Library v12.0.15 \r\n{W}x{H} [0,0 {W}x{H}] ({T}x{T}) {kind} Q=45"
                "|AppMag = 20|MPP = 0.5"
                if i == 0
                else f"Aperio Image Library v12.0.15 \r\n{W}x{H} -> {lv.shape[1]}x{lv.shape[0]} {kind} Q=45"
            )
            tif.write(
                iter(streams),
                shape=lv.shape,
                dtype=np.uint8,
                tile=(T, T),
                compression=compression,
                photometric="rgb",
                description=desc,
                metadata=None,
            )
            if i == 0:
                # Aperio's thumbnail: a stripped image after level 0, which is not a pyramid level.
                thumb = lv[::8, ::8]
                tif.write(thumb, photometric="rgb", description="Aperio thumbnail", metadata=None)
    return level0


def main():
    l0 = reference()
    l1 = halve(l0)
    l2 = halve(l1)
    for name, compression, ycbcr in [
        ("aperio-jp2k-33005.svs", 33005, False),
        ("aperio-jp2k-33003.svs", 33003, True),
    ]:
        level0 = write(name, compression, [l0, l1, l2], ycbcr)
        # How far the lossy coding strays from the drawing (printed for the README, not asserted).
        err = np.abs(level0.astype(int) - l0.astype(int))
        print(f"{name}: level 0 vs drawing max {err.max()} mean {err.mean():.3f}")
        Image.fromarray(level0).save(f"jp2k-{compression}-level0.png")


if __name__ == "__main__":
    main()
