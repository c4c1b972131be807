//! Any bytes as a bare data set (a DIMSE command, identifier or C-STORE data set) in a transfer syntax
//! chosen by the first byte, through the guard and dicom-object.
#![no_main]

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use libfuzzer_sys::fuzz_target;

const SYNTAXES: [&str; 5] = [
    "1.2.840.10008.1.2",      // implicit VR little endian (DIMSE commands)
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2.2",    // explicit VR big endian
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
    "1.2.840.10008.1.2.4.50", // JPEG baseline: encapsulated pixel data
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Some(ts) = TransferSyntaxRegistry.get(SYNTAXES[first as usize % SYNTAXES.len()]) else {
        return;
    };
    if let Ok(obj) = caravan_dicom_guard::read_dataset(rest, ts) {
        for e in obj.iter() {
            let _ = e.to_str();
        }
    }
});
