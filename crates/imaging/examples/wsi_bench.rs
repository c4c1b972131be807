//! Deep Zoom tile serving throughput: `wsi_bench [--rounds N] [--levels K] SLIDE...`
//!
//! SLIDE is a TIFF/SVS file or the DICOM files of one WSI series (default: the SVS fixture). For
//! the top K Deep Zoom levels (default 4) it renders every tile three ways and prints tiles/s:
//! - cold: a freshly opened slide, nothing decoded yet (source tiles decoded, resampled, JPEG
//!   encoded);
//! - warm: the same slide again (decoded source tiles in the slide's LRU, JPEG encoding redone);
//! - cached: encoded tiles from the node's tile cache (`wsi::cache::TileCache`).

use std::time::Instant;

use bytes::Bytes;
use imaging::wsi::cache::TileCache;
use imaging::wsi::dzi::{DeepZoom, DEFAULT_QUALITY};
use imaging::wsi::Slide;

fn open(paths: &[String]) -> Result<Slide, Box<dyn std::error::Error>> {
    let bytes: Vec<Bytes> = paths
        .iter()
        .map(|p| std::fs::read(p).map(Bytes::from))
        .collect::<Result<_, _>>()?;
    let dicom = bytes
        .first()
        .is_some_and(|b| b.len() > 132 && &b[128..132] == b"DICM");
    Ok(if dicom {
        Slide::open_dicom(&bytes)?
    } else {
        Slide::open_tiff(bytes.into_iter().next().unwrap_or_default())?
    })
}

type Tiles = Vec<(usize, u64, u64)>;

fn tiles(dz: &DeepZoom, levels: usize) -> Result<Tiles, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for level in dz.max_level().saturating_sub(levels - 1)..=dz.max_level() {
        let (cols, rows) = dz.tile_count(level)?;
        for row in 0..rows {
            for col in 0..cols {
                out.push((level, col, row));
            }
        }
    }
    Ok(out)
}

fn render(
    slide: &Slide,
    dz: &DeepZoom,
    list: &Tiles,
) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let mut bytes = 0;
    for &(l, c, r) in list {
        bytes += dz.tile_jpeg(slide, l, c, r, DEFAULT_QUALITY)?.len();
    }
    Ok((t.elapsed().as_secs_f64(), bytes))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut rounds, mut levels, mut paths) = (3usize, 4usize, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse()?,
            "--levels" => levels = args.next().ok_or("--levels K")?.parse()?,
            _ => paths.push(a),
        }
    }
    if paths.is_empty() {
        paths.push(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/wsi/aperio-jpeg.svs"
            )
            .into(),
        );
    }
    let levels = levels.max(1);
    let probe = open(&paths)?;
    let dz = DeepZoom::for_slide(&probe)?;
    let list = tiles(&dz, levels)?;
    println!(
        "slide {}×{} ({:?}, {} levels), {} Deep Zoom tiles in the top {levels} levels, {rounds} rounds",
        dz.width,
        dz.height,
        probe.format(),
        probe.levels().len(),
        list.len()
    );
    let (mut cold, mut warm, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let slide = open(&paths)?;
        let opened = t.elapsed().as_secs_f64();
        let (secs, bytes) = render(&slide, &dz, &list)?;
        cold.push(list.len() as f64 / (secs + opened));
        let (secs, _) = render(&slide, &dz, &list)?;
        warm.push(list.len() as f64 / secs);
        // The node's cache, filled once, then read back.
        let cache = TileCache::new(bytes * 2 + 1);
        for &(l, c, r) in &list {
            let jpeg = Bytes::from(dz.tile_jpeg(&slide, l, c, r, DEFAULT_QUALITY)?);
            let n = jpeg.len();
            cache.put(("bench".to_string(), l as u32, c, r), jpeg, n);
        }
        let t = Instant::now();
        let mut hits = 0usize;
        for _ in 0..100 {
            for &(l, c, r) in &list {
                hits += usize::from(cache.get(&("bench".to_string(), l as u32, c, r)).is_some());
            }
        }
        cached.push(hits as f64 / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "cold   (open + decode + resample + encode): {:>12.0} tiles/s",
        median(&mut cold)
    );
    println!(
        "warm   (decoded source tiles cached):       {:>12.0} tiles/s",
        median(&mut warm)
    );
    println!(
        "cached (encoded tiles from the tile cache): {:>12.0} tiles/s",
        median(&mut cached)
    );
    Ok(())
}
