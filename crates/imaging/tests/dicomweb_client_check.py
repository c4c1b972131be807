"""Black-box check of Caravan's DICOMweb with the dicomweb-client package.

Usage: python3 dicomweb_client_check.py BASE_URL FOLDER_OF_DCM_FILES
Exits non-zero on the first failed check; prints "N checks passed" at the end.
"""
import glob
import sys

import pydicom
from dicomweb_client.api import DICOMwebClient

url, folder = sys.argv[1], sys.argv[2]
client = DICOMwebClient(url=url)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    checks += 1
    print("ok:", what)


datasets = [pydicom.dcmread(f) for f in sorted(glob.glob(folder + "/*.dcm"))]
result = client.store_instances(datasets=datasets)
check(len(result.ReferencedSOPSequence) == len(datasets), "STOW-RS stored every instance")

studies = client.search_for_studies()
check(len(studies) == 3, "QIDO-RS finds 3 studies")
doe = client.search_for_studies(search_filters={"PatientName": "Doe*"})
check(len(doe) == 2, "QIDO-RS wildcard PatientName=Doe* finds 2")
dated = client.search_for_studies(search_filters={"StudyDate": "20200101-20211231"})
check(len(dated) == 2, "QIDO-RS date range finds 2")
limited = client.search_for_studies(limit=1, offset=1)
check(len(limited) == 1, "QIDO-RS limit/offset")
series = client.search_for_series(study_instance_uid="1.2.826.0.1.1")
check(len(series) == 2, "QIDO-RS series of a study")
instances = client.search_for_instances(study_instance_uid="1.2.826.0.1.1", series_instance_uid="1.2.826.0.1.1.1")
check(len(instances) == 2, "QIDO-RS instances of a series")
with_desc = client.search_for_studies(fields=["StudyDescription"], search_filters={"StudyInstanceUID": "1.2.826.0.1.1"})
check(len(with_desc) == 1 and "00200010" in with_desc[0], "QIDO-RS includefield")

ds = client.retrieve_instance("1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.1.1")
check(ds.SOPInstanceUID == "1.2.826.0.1.1.1.1", "WADO-RS instance")
original = next(d for d in datasets if d.SOPInstanceUID == "1.2.826.0.1.1.1.1")
check(ds.PixelData == original.PixelData, "WADO-RS instance pixel data intact")
study = client.retrieve_study("1.2.826.0.1.1")
check(len(study) == 3, "WADO-RS study")
meta = client.retrieve_instance_metadata("1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.1.1")
check(meta["00100010"]["Value"][0]["Alphabetic"] == "Doe^John", "WADO-RS metadata")
smeta = client.retrieve_series_metadata("1.2.826.0.1.1", "1.2.826.0.1.1.1")
check(len(smeta) == 2, "WADO-RS series metadata")
frames = client.retrieve_instance_frames("1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.1.1", frame_numbers=[1])
check(len(frames) == 1 and frames[0] == original.PixelData[: len(frames[0])] and len(frames[0]) == 128 * 128 * 2,
      "WADO-RS frames equal the stored pixel data")
png = client.retrieve_instance_rendered("1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.1.1", media_types=("image/png",))
check(png[:8] == b"\x89PNG\r\n\x1a\n", "WADO-RS rendered PNG")
jpeg = client.retrieve_instance_rendered("1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.1.1", media_types=("image/jpeg",))
check(jpeg[:2] == b"\xff\xd8", "WADO-RS rendered JPEG")
print(f"{checks} checks passed")
