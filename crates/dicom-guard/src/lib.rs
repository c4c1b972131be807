//! Opens untrusted DICOM bytes with dicom-rs only after checking that no declared length asks for more
//! than the bytes that remain.
//!
//! dicom-rs 0.10 trusts declared lengths: it reserves and zero-fills a value's declared length before
//! reading it (dicom-parser's `read_value_*`, dicom-object's file meta reader), and reserves four bytes per
//! declared byte for a pixel data offset table, so a 441-byte file declaring a 600 MB offset table asked
//! for 2.4 GB, and a 3 KB file declaring a 4 GB value touched 4 GB. This crate is the one place where the
//! node's DICOM readers (the ECG analyser, the archive's STOW-RS / C-STORE / upload path, the DIMSE
//! command and identifier decoder) open untrusted bytes.
//!
//! How it checks, so that it cannot lose step with the parser:
//! - the file meta group is scanned by hand, decoding each header exactly as dicom-object's meta reader
//!   does (explicit VR little endian, group FFFE without a VR, elements until the group length is used up),
//!   and every declared length must fit in the bytes left; the real meta reader then runs over the same
//!   bytes and must end where the scan did;
//! - the data set is walked by dicom-parser's own token reader (the very reader the object is built from,
//!   with the same options), stopping at each element header, item header and sequence header — which
//!   the reader hands out before it reads or allocates the value — to compare the declared length with
//!   the bytes not yet consumed. Values are read only once their length has passed, so the walk never
//!   allocates more than the input holds (an offset table: four times its checked length). Sequences
//!   nested deeper than [`MAX_DEPTH`] are refused: dicom-object builds nested sequences recursively. A
//!   data set that stops inside a sequence (or part-way through a header) is refused as cut short:
//!   dicom-parser takes such an end of input for the end of the data set, so a file cut between two pixel
//!   data fragments would parse with frames missing.
//! - the walk also adds up what the parsed object will cost (per element, per item, per backslash-split text
//!   value, plus the values' bytes) and refuses a data set that would take more than 16 times its size plus
//!   64 MiB: 10 MB of backslashes in one UC value made dicom-object allocate 600 MB of empty `String`s.
//! - a deflated data set is inflated first (to at most [`inflate_cap`] bytes) and walked the same way.
//!
//! A walk that meets a parse error stops there and leaves the error to the real parse, which meets it at
//! the same token (same bytes, same reader, same options) having read only checked values before it.
//! The cost is a second pass over the data set: values are copied once more, nothing is decoded twice.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use dicom_core::header::{HasLength, Header};
use dicom_core::{Tag, VR};
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_encoding::TransferSyntax;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTable;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_parser::dataset::read::{DataSetReader, DataSetReaderOptions};
use dicom_parser::dataset::DataToken;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Deepest nesting of sequences accepted.
pub const MAX_DEPTH: usize = 64;

/// A deflated data set may inflate to at most this many times its compressed size ...
const INFLATE_RATIO: usize = 64;
/// ... or to this many bytes, whichever is more.
const INFLATE_FLOOR: usize = 64 << 20;

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// What dicom-object's in-memory object costs per element, per sequence item and per text value beyond the
/// value's own bytes (measured with a counting allocator on dicom-rs 0.10, rounded up: an empty element
/// 217 bytes, an empty item 77, a value of a backslash-split text 58 — an empty `String` and the doubling
/// of the list it is collected into).
const ELEMENT_COST: usize = 224;
const ITEM_COST: usize = 80;
const TEXT_VALUE_COST: usize = 64;
/// The parsed object may cost at most this many times the input ...
const COST_RATIO: usize = 16;
/// ... plus this much.
const COST_FLOOR: usize = 64 << 20;

/// The VRs dicom-parser splits at backslashes into one `String` per value (with its default, preserving
/// read strategy).
fn split_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::PN
            | VR::SH
            | VR::TM
            | VR::UC
            | VR::UI
    )
}

/// Why DICOM bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Not Part 10 bytes at all.
    #[error("not a DICOM Part 10 stream: {0}")]
    NotPart10(String),
    /// A header declares more bytes than follow it.
    #[error("{what} at byte {at}{place} declares {declared} bytes but only {remain} remain")]
    DeclaredLength {
        what: String,
        /// Where the value would start.
        at: usize,
        /// Empty for the Part 10 bytes as given; otherwise which bytes `at` counts in.
        place: &'static str,
        declared: u32,
        remain: usize,
    },
    /// Sequences nested deeper than [`MAX_DEPTH`].
    #[error("sequences nested deeper than {MAX_DEPTH} levels at byte {at}{place}")]
    TooDeep { at: usize, place: &'static str },
    /// The data set stops inside a sequence or part-way through an element header. dicom-parser takes an end of
    /// input there for the end of the data set, so a file cut between two fragments or items would otherwise
    /// parse, short of what it held.
    #[error("the data set is cut short at byte {at}{place}: {what}")]
    CutShort {
        at: usize,
        place: &'static str,
        what: String,
    },
    /// The parsed object would take far more memory than the input (e.g. megabytes of backslashes: one
    /// `String` per empty value).
    #[error("the data set would take about {estimate} bytes of memory once parsed ({elements} elements, {items} items, {values} text values) for {input} bytes of input; at most {budget}")]
    TooCostly {
        estimate: usize,
        budget: usize,
        input: usize,
        elements: usize,
        items: usize,
        values: usize,
    },
    /// A deflated data set that inflates past [`inflate_cap`].
    #[error("the deflated data set ({compressed} bytes) inflates to more than {cap} bytes")]
    InflatesTooFar { compressed: usize, cap: usize },
    /// The file meta group's end as counted from its declared lengths and as read by dicom-object differ.
    #[error("the file meta group ends at byte {scanned} by its declared lengths but dicom-object read {read} bytes")]
    MetaMismatch { scanned: usize, read: usize },
    /// dicom-rs refused the bytes (after they passed the checks): its message and causes.
    #[error("{0}")]
    Parse(String),
}

/// A Part 10 object and where its data set starts.
#[derive(Debug, Clone)]
pub struct Part10 {
    pub object: FileDicomObject<InMemDicomObject>,
    /// Offset of the data set in the bytes given (after the preamble, if any, and the file meta group).
    pub data_set_offset: usize,
}

/// The most a deflated data set of `compressed` bytes may inflate to.
pub fn inflate_cap(compressed: usize) -> usize {
    INFLATE_FLOOR.max(compressed.saturating_mul(INFLATE_RATIO))
}

/// An error and its causes, one after the other (dicom-rs puts the useful part in the causes).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn parse_error(e: &dyn std::error::Error) -> GuardError {
    GuardError::Parse(error_chain(e))
}

fn tag_name(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.0, tag.1)
}

/// The part of `bytes` that dicom-object would read without a preamble, and how much was skipped.
fn part10_body(bytes: &[u8]) -> Result<(&[u8], usize), GuardError> {
    // As dicom-object's own detection: a preamble first, then a bare "DICM".
    if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        Ok((&bytes[128..], 128))
    } else if bytes.starts_with(b"DICM") {
        Ok((bytes, 0))
    } else {
        Err(GuardError::NotPart10(
            "no \"DICM\" magic code (after a 128-byte preamble or at the start)".into(),
        ))
    }
}

/// Checks Part 10 bytes (with the 128-byte preamble, or starting at "DICM") and parses them with dicom-rs.
pub fn open_part10(bytes: &[u8]) -> Result<Part10, GuardError> {
    let (body, skipped) = part10_body(bytes)?;
    let meta_end = check_part10_body(body)?;
    let object = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(body)
        .map_err(|e| parse_error(&e))?;
    Ok(Part10 {
        object,
        data_set_offset: skipped + meta_end,
    })
}

/// Checks Part 10 bytes without keeping the parsed object; returns the data set's offset.
pub fn check_part10(bytes: &[u8]) -> Result<usize, GuardError> {
    let (body, skipped) = part10_body(bytes)?;
    Ok(skipped + check_part10_body(body)?)
}

/// `body` starts with "DICM". Returns where the data set starts in it.
fn check_part10_body(body: &[u8]) -> Result<usize, GuardError> {
    let scanned = scan_meta(body)?;
    let pos = Rc::new(Cell::new(0));
    let meta = FileMetaTable::from_reader(Counted {
        data: body,
        pos: pos.clone(),
    })
    .map_err(|e| parse_error(&e))?;
    if pos.get() != scanned {
        return Err(GuardError::MetaMismatch {
            scanned,
            read: pos.get(),
        });
    }
    // An unknown transfer syntax is refused by dicom-object before it reads the data set.
    if let Some(ts) = TransferSyntaxRegistry.get(meta.transfer_syntax()) {
        check_dataset(&body[scanned..], ts)?;
    }
    Ok(scanned)
}

/// Checks a data set (no preamble, no file meta group) in transfer syntax `ts` and parses it.
pub fn read_dataset(bytes: &[u8], ts: &TransferSyntax) -> Result<InMemDicomObject, GuardError> {
    check_dataset(bytes, ts)?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| parse_error(&e))
}

/// The VRs whose explicit-VR length field is 16 bits (PS3.5 7.1.2), exactly as dicom-encoding reads them.
fn short_form(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::AT
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::TM
            | VR::UI
            | VR::UL
            | VR::US
    )
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An explicit VR little endian header at `pos` as dicom-encoding decodes it: (tag, length, header size).
fn meta_header(b: &[u8], pos: usize) -> Option<(Tag, u32, usize)> {
    let tag = Tag(u16_le(b, pos)?, u16_le(b, pos + 2)?);
    if tag.0 == 0xFFFE {
        // Item and delimiter headers carry no VR.
        return Some((tag, u32_le(b, pos + 4)?, 8));
    }
    let vr = VR::from_binary([*b.get(pos + 4)?, *b.get(pos + 5)?]).unwrap_or(VR::UN);
    if short_form(vr) {
        Some((tag, u32::from(u16_le(b, pos + 6)?), 8))
    } else {
        Some((tag, u32_le(b, pos + 8)?, 12))
    }
}

/// Walks the file meta group as dicom-object's `FileMetaTable` reader does and checks each declared length;
/// returns where the reader stops (the start of the data set). Where the reader would refuse the bytes
/// before reading a value (a short header, a first element other than a 4-byte group length, an
/// undefined length), the scan stops and leaves the refusal to it.
fn scan_meta(b: &[u8]) -> Result<usize, GuardError> {
    let mut pos = 4;
    let Some((tag, len, header)) = meta_header(b, pos) else {
        return Ok(pos);
    };
    if tag != Tag(0x0002, 0x0000) || len != 4 {
        return Ok(pos);
    }
    let Some(group_length) = u32_le(b, pos + header) else {
        return Ok(pos);
    };
    pos += header + 4;
    let mut read: u32 = 0;
    while read < group_length {
        let Some((tag, len, header)) = meta_header(b, pos) else {
            return Ok(pos);
        };
        if len == UNDEFINED {
            return Ok(pos);
        }
        let start = pos + header;
        let remain = b.len().saturating_sub(start);
        if len as usize > remain {
            return Err(GuardError::DeclaredLength {
                what: format!("file meta element {}", tag_name(tag)),
                at: start,
                place: "",
                declared: len,
                remain,
            });
        }
        pos = start + len as usize;
        read = read.saturating_add(header as u32).saturating_add(len);
    }
    Ok(pos)
}

/// Checks a data set (no preamble, no file meta group) in transfer syntax `ts`, without keeping it.
pub fn check_dataset(data: &[u8], ts: &TransferSyntax) -> Result<(), GuardError> {
    match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            let cap = inflate_cap(data.len());
            let mut inflated = Vec::new();
            // A corrupt stream stops inflation; what came out before is what the parser would read, so
            // it is checked all the same, and the parser then meets the corruption.
            let _ = adapter
                .adapt_reader(Box::new(data))
                .take(cap as u64 + 1)
                .read_to_end(&mut inflated);
            if inflated.len() > cap {
                return Err(GuardError::InflatesTooFar {
                    compressed: data.len(),
                    cap,
                });
            }
            walk(&inflated, ts, " of the inflated data set")
        }
        // dicom-rs refuses a data set codec it does not have before reading anything.
        Codec::Dataset(None) => Ok(()),
        _ => walk(data, ts, " of the data set"),
    }
}

/// A reader over a slice that tells how much has been consumed.
struct Counted<'a> {
    data: &'a [u8],
    pos: Rc<Cell<usize>>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let at = self.pos.get();
        let rest = self.data.get(at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos.set(at + n);
        Ok(n)
    }
}

/// Walks the data set with dicom-parser's token reader, checking each declared length before the reader
/// reads (and allocates) the value.
fn walk(data: &[u8], ts: &TransferSyntax, place: &'static str) -> Result<(), GuardError> {
    let pos = Rc::new(Cell::new(0));
    let source = Counted {
        data,
        pos: pos.clone(),
    };
    // dicom-object reads with these default options (odd lengths accepted as they are, values preserved).
    let Ok(reader) =
        DataSetReader::new_with_ts_options(source, ts, DataSetReaderOptions::default())
    else {
        // The real parse fails the same way, before reading.
        return Ok(());
    };
    // The tags of the open sequences, innermost last (pixel data for an encapsulated pixel sequence).
    let mut open: Vec<Tag> = Vec::new();
    // Where the last whole token ended.
    let mut end = 0;
    let budget = data
        .len()
        .saturating_mul(COST_RATIO)
        .saturating_add(COST_FLOOR);
    let (mut elements, mut items, mut values, mut estimate) = (0usize, 0usize, 0usize, 0usize);
    for token in reader {
        let Ok(token) = token else {
            return Ok(());
        };
        let at = pos.get();
        end = at;
        let remain = data.len().saturating_sub(at);
        let too_long = |what: String, declared: u32| GuardError::DeclaredLength {
            what,
            at,
            place,
            declared,
            remain,
        };
        match token {
            DataToken::ElementHeader(h) => {
                elements += 1;
                estimate = estimate.saturating_add(ELEMENT_COST);
                if let Some(len) = h.length().get() {
                    if len as usize > remain {
                        return Err(too_long(
                            format!("element {} {}", tag_name(h.tag()), h.vr()),
                            len,
                        ));
                    }
                    estimate = estimate.saturating_add(len as usize);
                    if split_text(h.vr()) {
                        // The value's bytes are all there (checked above) and not yet read.
                        let value = &data[at..at + len as usize];
                        let n = 1 + value.iter().filter(|&&b| b == b'\\').count();
                        values += n;
                        estimate = estimate.saturating_add(n.saturating_mul(TEXT_VALUE_COST));
                    }
                }
            }
            DataToken::SequenceStart { tag, len } => {
                if let Some(len) = len.get() {
                    if len as usize > remain {
                        return Err(too_long(format!("sequence {}", tag_name(tag)), len));
                    }
                }
                open.push(tag);
                elements += 1;
                estimate = estimate.saturating_add(ELEMENT_COST);
            }
            DataToken::PixelSequenceStart => {
                open.push(Tag(0x7FE0, 0x0010));
                elements += 1;
                estimate = estimate.saturating_add(ELEMENT_COST);
            }
            DataToken::SequenceEnd => {
                open.pop();
            }
            DataToken::ItemStart { len } => {
                items += 1;
                estimate = estimate.saturating_add(ITEM_COST);
                if let Some(len) = len.get() {
                    if len as usize > remain {
                        let within = open.last().map(|t| tag_name(*t)).unwrap_or_default();
                        return Err(too_long(format!("item of {within}"), len));
                    }
                }
            }
            DataToken::ItemEnd
            | DataToken::PrimitiveValue(_)
            | DataToken::ItemValue(_)
            | DataToken::OffsetTable(_) => {}
        }
        if open.len() > MAX_DEPTH {
            return Err(GuardError::TooDeep { at, place });
        }
        if estimate > budget {
            return Err(GuardError::TooCostly {
                estimate,
                budget,
                input: data.len(),
                elements,
                items,
                values,
            });
        }
    }
    if let Some(tag) = open.last() {
        return Err(GuardError::CutShort {
            at: end,
            place,
            what: format!("sequence {} is not closed", tag_name(*tag)),
        });
    }
    if end < data.len() {
        return Err(GuardError::CutShort {
            at: end,
            place,
            what: format!(
                "{} bytes follow the last whole element, too few for another",
                data.len() - end
            ),
        });
    }
    Ok(())
}
