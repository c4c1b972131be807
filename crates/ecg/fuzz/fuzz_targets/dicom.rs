//! Any bytes as a DICOM waveform file (through dicom-object's parser and our Waveform Sequence decoding).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ecg::dicom::read_dicom_bytes(data);
});
