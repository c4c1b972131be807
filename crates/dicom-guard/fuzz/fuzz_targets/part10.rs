//! Any bytes as a Part 10 file through the guard and, if they pass, dicom-object.
//! Run with a memory ceiling so that any large allocation is a finding:
//! `cargo +nightly fuzz run part10 seeds/part10 -- -rss_limit_mb=2048 -malloc_limit_mb=512`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = caravan_dicom_guard::open_part10(data) {
        // Touch what a reader would: every element's value as text.
        for e in p.object.iter() {
            let _ = e.to_str();
        }
    }
});
