#!/usr/bin/env python3
"""Regenerates the whole-slide fixtures of crates/imaging/tests/data/wsi.

pip install tifffile imagecodecs numpy pillow pydicom   (tested: tifffile 2026.3.3, imagecodecs
2026.3.6, Pillow 13.0.0, pydicom 3.0.2)

Everything is drawn here (no third-party image), so the fixtures are under the project's licence.
Each fixture comes with the reference pixels as decoded by Pillow / imagecodecs (PNG), which the
Rust tests compare against.

- reference.png           the 600x400 level-0 image (lossless), and level1.png / level2.png: its
                          2x2 and 4x4 box averages (the lower pyramid levels)
- pyramid-deflate.tiff    tiled (128x128) pyramidal TIFF, Deflate, three levels in the IFD chain
- aperio-jpeg.svs         Aperio-like SVS: "Aperio" description, PhotometricInterpretation RGB,
                          JPEG tiles coded in YCbCr with shared JPEGTables (as Aperio writes them),
                          three levels; jpeg-level0.png is Pillow's decoding of its level-0 tiles
- wsi-full-*.dcm          DICOM VL WSI series, TILED_FULL: level 0 JPEG baseline (YBR_FULL_422),
                          level 1 JPEG 2000 lossless (RGB), level 2 native, plus a LABEL image
                          (not a level); level 0 has the same JPEG tiles as the SVS (jpeg-level0.png)
- wsi-sparse.dcm          DICOM VL WSI, TILED_SPARSE, one level (the level-0 JPEG frames, some
                          left out, the rest in shuffled order)
"""

import io
import random

import imagecodecs
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    generate_uid,
)

W, H, T = 600, 400, 128
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def reference():
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = (x * 255 / W) * 0.7 + 40
    b = (y * 255 / H) * 0.6 + 60
    img = np.stack([r, g, b], axis=-1)
    # Sharp features: a dark ring and a bright square, so misplaced tiles show.
    d = np.hypot(x - 410, y - 170)
    img[(d > 60) & (d < 72)] = [40, 20, 90]
    img[250:330, 60:180] = [250, 235, 200]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def halve(a):
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w].astype(np.uint16)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(np.uint8)


def tiles(a):
    """Tiles of a level, row by row, padded with white to full tiles."""
    out = []
    for ty in range(0, a.shape[0], T):
        for tx in range(0, a.shape[1], T):
            t = np.full((T, T, 3), 255, np.uint8)
            part = a[ty : ty + T, tx : tx + T]
            t[: part.shape[0], : part.shape[1]] = part
            out.append(t)
    return out


def jpeg(t, quality=90):
    buf = io.BytesIO()
    Image.fromarray(t).save(buf, "JPEG", quality=quality, subsampling="4:2:0")
    return buf.getvalue()


def split_tables(stream):
    """Splits a JPEG into (tables, abbreviated image): DQT and DHT segments go to the tables."""
    assert stream[:2] == b"\xff\xd8"
    tables, image = bytearray(b"\xff\xd8"), bytearray(b"\xff\xd8")
    i = 2
    while True:
        marker = stream[i : i + 2]
        length = int.from_bytes(stream[i + 2 : i + 4], "big")
        seg = stream[i : i + 2 + length]
        if marker == b"\xff\xda":  # SOS: the rest is entropy-coded data
            image += stream[i:]
            break
        if marker in (b"\xff\xdb", b"\xff\xc4"):
            tables += seg
        else:
            image += seg
        i += 2 + length
    tables += b"\xff\xd9"
    return bytes(tables), bytes(image)


def decoded(stream):
    return np.asarray(Image.open(io.BytesIO(stream)).convert("RGB"))


def assemble(decoded_tiles, w, h):
    out = np.zeros((h, w, 3), np.uint8)
    across = -(-w // T)
    for i, t in enumerate(decoded_tiles):
        ty, tx = divmod(i, across)
        part = out[ty * T : ty * T + T, tx * T : tx * T + T]
        part[:] = t[: part.shape[0], : part.shape[1]]
    return out


def main():
    l0 = reference()
    l1 = halve(l0)
    l2 = halve(l1)
    Image.fromarray(l0).save("reference.png")
    Image.fromarray(l1).save("level1.png")
    Image.fromarray(l2).save("level2.png")

    # Deflate-compressed tiled pyramid in the main IFD chain (OpenSlide's "generic tiled TIFF").
    with tifffile.TiffWriter("pyramid-deflate.tiff") as tif:
        for i, lv in enumerate([l0, l1, l2]):
            tif.write(
                lv,
                tile=(T, T),
                compression="zlib",
                predictor=True,
                photometric="rgb",
                subfiletype=1 if i else 0,
                metadata=None,
            )

    # Aperio-like SVS: JPEG tiles with the tables of each level shared in JPEGTables.
    level0_decoded = None
    with tifffile.TiffWriter("aperio-jpeg.svs") as tif:
        for i, lv in enumerate([l0, l1, l2]):
            streams = [jpeg(t) for t in tiles(lv)]
            # Pillow writes the same tables for every tile of one quality setting.
            split = [split_tables(s) for s in streams]
            assert len({t for t, _ in split}) == 1
            if i == 0:
                level0_decoded = assemble([decoded(s) for s in streams], W, H)
            desc = (
                "Aperio Image Library v12.0.0 \r\n600x400 [0,0 600x400] (128x128) JPEG/RGB Q=90"
                "|AppMag = 20|MPP = 0.5"
                if i == 0
                else "Aperio Image Library v12.0.0 \r\n600x400 -> %dx%d JPEG/RGB Q=90" % (lv.shape[1], lv.shape[0])
            )
            tif.write(
                iter([img for _, img in split]),
                shape=lv.shape,
                dtype=np.uint8,
                tile=(T, T),
                compression=7,
                photometric="rgb",
                description=desc,
                metadata=None,
                extratags=[(347, 7, len(split[0][0]), split[0][0], True)],
            )
    # tifffile records JPEG tiles as YCbCr; Aperio says RGB over the same YCbCr-coded tiles.
    with tifffile.TiffFile("aperio-jpeg.svs", mode="r+b") as tif:
        for page in tif.pages:
            page.tags["PhotometricInterpretation"].overwrite(2)
    Image.fromarray(level0_decoded).save("jpeg-level0.png")

    # DICOM WSI.
    study, series = generate_uid(), generate_uid()
    frame_of_ref = generate_uid()

    def base(level_array, ts, photometric, frames, organization, image_type):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = WSI
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ts
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = WSI
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PatientID = "WSI-TEST"
        ds.PatientName = "Slide^Test"
        ds.Modality = "SM"
        ds.StudyDate = "20261205"
        ds.SeriesNumber = 1
        ds.ImageType = ["DERIVED", "PRIMARY", image_type, "NONE"]
        ds.Rows, ds.Columns = T, T
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = photometric
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
        ds.NumberOfFrames = frames
        ds.TotalPixelMatrixColumns = level_array.shape[1]
        ds.TotalPixelMatrixRows = level_array.shape[0]
        ds.DimensionOrganizationType = organization
        return ds

    def save(ds, name):
        ds.save_as(name, enforce_file_format=True)

    t0 = tiles(l0)
    j0 = [jpeg(t) for t in t0]
    # The DICOM level 0 holds the very JPEG tiles of the SVS level 0: one reference for both.
    assert (assemble([decoded(s) for s in j0], W, H) == level0_decoded).all()
    ds = base(l0, JPEGBaseline8Bit, "YBR_FULL_422", len(j0), "TILED_FULL", "VOLUME")
    ds.InstanceNumber = 1
    ds.PixelData = encapsulate(j0, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    save(ds, "wsi-full-0.dcm")

    t1 = tiles(l1)
    j1 = [imagecodecs.jpeg2k_encode(t, level=0, codecformat="J2K", reversible=True, mct=False) for t in t1]
    ds = base(l1, JPEG2000Lossless, "RGB", len(j1), "TILED_FULL", "VOLUME")
    ds.InstanceNumber = 2
    ds.PixelData = encapsulate(j1, has_bot=True)
    ds["PixelData"].VR = "OB"
    save(ds, "wsi-full-1.dcm")

    t2 = tiles(l2)
    ds = base(l2, ExplicitVRLittleEndian, "RGB", len(t2), "TILED_FULL", "VOLUME")
    ds.InstanceNumber = 3
    ds.PixelData = b"".join(t.tobytes() for t in t2)
    save(ds, "wsi-full-2.dcm")

    label = np.full((32, 32, 3), 30, np.uint8)
    ds = base(label, ExplicitVRLittleEndian, "RGB", 1, "TILED_FULL", "LABEL")
    ds.Rows, ds.Columns = 32, 32
    ds.InstanceNumber = 4
    ds.PixelData = label.tobytes()
    save(ds, "wsi-full-label.dcm")

    # TILED_SPARSE: leave out tiles (1, 0) and (2, 2), shuffle the rest.
    across = -(-W // T)
    kept = [i for i in range(len(j0)) if i not in (1, 2 * across + 2)]
    random.Random(7).shuffle(kept)
    series = generate_uid()
    ds = base(l0, JPEGBaseline8Bit, "YBR_FULL_422", len(kept), "TILED_SPARSE", "VOLUME")
    ds.SeriesInstanceUID = series
    ds.InstanceNumber = 1
    groups = []
    for i in kept:
        ty, tx = divmod(i, across)
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix = tx * T + 1
        pos.RowPositionInTotalImagePixelMatrix = ty * T + 1
        pos.XOffsetInSlideCoordinateSystem = 0
        pos.YOffsetInSlideCoordinateSystem = 0
        pos.ZOffsetInSlideCoordinateSystem = 0
        item = Dataset()
        item.PlanePositionSlideSequence = [pos]
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.PixelData = encapsulate([j0[i] for i in kept], has_bot=True)
    ds["PixelData"].VR = "OB"
    save(ds, "wsi-sparse.dcm")


if __name__ == "__main__":
    main()
