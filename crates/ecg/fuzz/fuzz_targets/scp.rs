//! Any bytes as an SCP-ECG record. So that mutations reach the decoder instead of stopping at the CRCs, the
//! target first rewrites the record size, the record CRC and the CRC of every section that Section 0 points
//! to (bounds permitting); the parser must then cope with whatever structure is left.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

fn fix_section(rec: &mut [u8], start: usize, len: usize) {
    if len >= 2 && start.checked_add(len).is_some_and(|end| end <= rec.len()) {
        let c = CRC.checksum(&rec[start + 2..start + len]);
        rec[start..start + 2].copy_from_slice(&c.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rec = data.to_vec();
    if rec.len() >= 22 {
        let size = rec.len() as u32;
        rec[2..6].copy_from_slice(&size.to_le_bytes());
        let s0_len = u32_at(&rec, 10).unwrap_or(0);
        let mut at = 6 + 16;
        while at + 10 <= (6 + s0_len).min(rec.len()) {
            if let (Some(len), Some(index)) = (u32_at(&rec, at + 2), u32_at(&rec, at + 6)) {
                if index > 0 && index - 1 != 6 {
                    fix_section(&mut rec, index - 1, len);
                }
            }
            at += 10;
        }
        fix_section(&mut rec, 6, s0_len);
        let c = CRC.checksum(&rec[2..]);
        rec[0..2].copy_from_slice(&c.to_le_bytes());
    }
    let _ = ecg::scp::read_scp(&rec);
});
