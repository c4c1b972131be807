//! `caravan dicom slides-bench`: how fast Deep Zoom tiles are made and served from the caches, on slide files
//! (by default the test fixtures in `tests/data/wsi`).
//!
//! For each slide, each pass: **cold** opens the slide from its bytes (structure, no decoded tile) and makes
//! every tile of every Deep Zoom level (read and decode source tiles, resample, JPEG), putting each into a fresh
//! [`TileCache`] as the node does; **warm source** makes every tile again from the same opened slide (its
//! decoded-source-tile LRU may hold what the tile needs; resampling and JPEG are paid again), **warm** answers
//! every tile from the tile cache (what a second viewer of the same region costs, before HTTP). A measurement
//! repeats its sweep until it lasts a quarter of a second; figures are the median over passes, with the thread's
//! CPU time per cold tile and the machine's load average, since tiles/s on a shared machine says little without
//! them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use super::cache::{TileCache, DEFAULT_TILE_CACHE_BYTES};
use super::dzi::{DeepZoom, DEFAULT_QUALITY};
use super::Slide;
use crate::error::{Error, Result};

/// One slide to measure: a TIFF/SVS file, or the DICOM instances of one WSI series.
#[derive(Debug, Clone)]
pub struct SlideSource {
    pub name: String,
    pub files: Vec<PathBuf>,
}

impl SlideSource {
    /// `a.svs`, or `level0.dcm,level1.dcm,…` for a DICOM series.
    pub fn parse(arg: &str) -> Self {
        let files: Vec<PathBuf> = arg.split(',').map(PathBuf::from).collect();
        let name = files
            .first()
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        SlideSource { name, files }
    }

    /// The fixtures of `tests/data/wsi` (from the source tree this binary was built from).
    pub fn fixtures() -> Vec<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wsi");
        let f = |n: &str| dir.join(n);
        vec![
            SlideSource {
                name: "aperio-jpeg.svs".into(),
                files: vec![f("aperio-jpeg.svs")],
            },
            SlideSource {
                name: "pyramid-deflate.tiff".into(),
                files: vec![f("pyramid-deflate.tiff")],
            },
            SlideSource {
                name: "wsi-full (DICOM, 3 levels)".into(),
                files: vec![
                    f("wsi-full-0.dcm"),
                    f("wsi-full-1.dcm"),
                    f("wsi-full-2.dcm"),
                ],
            },
            SlideSource {
                name: "wsi-sparse.dcm".into(),
                files: vec![f("wsi-sparse.dcm")],
            },
        ]
    }

    fn load(&self) -> Result<Vec<Bytes>> {
        self.files
            .iter()
            .map(|p| {
                std::fs::read(p).map(Bytes::from).map_err(|e| {
                    Error::Config(format!("cannot read slide file {}: {e}", p.display()))
                })
            })
            .collect()
    }
}

fn open(bytes: &[Bytes]) -> Result<Slide> {
    let tiff = bytes.len() == 1
        && (bytes[0].starts_with(b"II*\0")
            || bytes[0].starts_with(b"MM\0*")
            || bytes[0].starts_with(b"II+\0")
            || bytes[0].starts_with(b"MM\0+"));
    let slide = if tiff {
        Slide::open_tiff(bytes[0].clone())
    } else {
        Slide::open_dicom(bytes)
    };
    slide.map_err(|e| Error::Config(format!("not a slide: {e}")))
}

/// The figures of one slide.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlideFigures {
    pub name: String,
    pub width: u64,
    pub height: u64,
    /// Deep Zoom tiles over all levels (one pass).
    pub tiles: u64,
    /// Encoded bytes of one pass's tiles.
    pub tile_bytes: u64,
    pub cold_tiles_per_second: f64,
    pub warm_source_tiles_per_second: f64,
    pub warm_tiles_per_second: f64,
    /// CPU time of the bench's thread per cold tile, median over passes; `None` without procfs.
    pub cold_cpu_ms_per_tile: Option<f64>,
}

/// The benchmark's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlidesBenchReport {
    pub passes: usize,
    pub release_build: bool,
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) before and after.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub slides: Vec<SlideFigures>,
}

fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// CPU time of the calling thread (the bench runs on one thread), in seconds: from the scheduler's nanosecond
/// account (`/proc/thread-self/schedstat`), else the process's 10 ms ticks.
fn cpu_seconds() -> Option<f64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&ns| ns > 0)
        .map(|ns| ns as f64 / 1e9)
        .or_else(|| crate::cli::process_cpu_seconds("self"))
}

/// Each timed measurement lasts at least this long (the fixtures make a pass of a few milliseconds).
const MIN_MEASURE_SECONDS: f64 = 0.25;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Every (level, column, row) of a Deep Zoom pyramid, or of its `top` finest levels.
fn all_tiles(dz: &DeepZoom, top: Option<usize>) -> Result<Vec<(usize, u64, u64)>> {
    let mut out = Vec::new();
    let first = top.map_or(0, |k| dz.level_count().saturating_sub(k.max(1)));
    for level in first..dz.level_count() {
        let (cols, rows) = dz
            .tile_count(level)
            .map_err(|e| Error::Config(e.to_string()))?;
        for row in 0..rows {
            for col in 0..cols {
                out.push((level, col, row));
            }
        }
    }
    Ok(out)
}

fn make_all(
    slide: &Slide,
    dz: &DeepZoom,
    tiles: &[(usize, u64, u64)],
    cache: Option<&TileCache>,
) -> Result<u64> {
    let mut bytes = 0u64;
    for &(level, col, row) in tiles {
        let jpeg = dz
            .tile_jpeg(slide, level, col, row, DEFAULT_QUALITY)
            .map_err(|e| Error::Config(format!("tile {level}/{col}_{row}: {e}")))?;
        bytes += jpeg.len() as u64;
        if let Some(cache) = cache {
            let n = jpeg.len();
            cache.put(
                (String::new(), level as u32, col, row),
                Bytes::from(jpeg),
                n,
            );
        }
    }
    Ok(bytes)
}

/// Measures every slide over `passes` passes (at least one), on every Deep Zoom level or the `levels` finest
/// (a large slide's full pyramid is mostly its finest levels anyway).
pub fn run(
    sources: &[SlideSource],
    passes: usize,
    levels: Option<usize>,
) -> Result<SlidesBenchReport> {
    let passes = passes.max(1);
    let load_before = load_average();
    let mut slides = Vec::new();
    for source in sources {
        let bytes = source.load()?;
        let probe = open(&bytes)?;
        let dz = DeepZoom::for_slide(&probe).map_err(|e| Error::Config(e.to_string()))?;
        let tiles = all_tiles(&dz, levels)?;
        // Sweeps per measurement, so that one lasts at least MIN_MEASURE_SECONDS (from a trial sweep).
        let t = Instant::now();
        make_all(&open(&bytes)?, &dz, &tiles, None)?;
        let sweeps =
            ((MIN_MEASURE_SECONDS / t.elapsed().as_secs_f64().max(1e-6)).ceil() as usize).max(1);
        let n = (tiles.len() * sweeps) as f64;
        let (mut cold, mut warm_source, mut warm, mut cpu) = (vec![], vec![], vec![], vec![]);
        let mut tile_bytes = 0;
        for _ in 0..passes {
            let cpu0 = cpu_seconds();
            let t = Instant::now();
            let mut last = None;
            for _ in 0..sweeps {
                let slide = open(&bytes)?;
                let cache = TileCache::new(DEFAULT_TILE_CACHE_BYTES);
                tile_bytes = make_all(&slide, &dz, &tiles, Some(&cache))?;
                last = Some((slide, cache));
            }
            cold.push(n / t.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (cpu0, cpu_seconds()) {
                cpu.push((b - a) * 1000.0 / n);
            }

            let Some((slide, cache)) = last else {
                return Err(Error::Config("no sweep ran".into()));
            };
            let t = Instant::now();
            for _ in 0..sweeps {
                make_all(&slide, &dz, &tiles, None)?;
            }
            warm_source.push(n / t.elapsed().as_secs_f64());

            // Cache hits are sub-microsecond: many more sweeps.
            let repeat = sweeps * 100;
            let t = Instant::now();
            let mut hits = 0u64;
            for _ in 0..repeat {
                for &(level, col, row) in &tiles {
                    if let Some(b) = cache.get(&(String::new(), level as u32, col, row)) {
                        hits += u64::from(!b.is_empty());
                    }
                }
            }
            let elapsed = t.elapsed().as_secs_f64();
            if hits != (tiles.len() * repeat) as u64 {
                return Err(Error::Config(format!(
                    "{}: the tile cache did not hold every tile ({hits} hits)",
                    source.name
                )));
            }
            warm.push((tiles.len() * repeat) as f64 / elapsed);
        }
        slides.push(SlideFigures {
            name: source.name.clone(),
            width: probe.dimensions().0,
            height: probe.dimensions().1,
            tiles: tiles.len() as u64,
            tile_bytes,
            cold_tiles_per_second: median(&mut cold),
            warm_source_tiles_per_second: median(&mut warm_source),
            warm_tiles_per_second: median(&mut warm),
            cold_cpu_ms_per_tile: (!cpu.is_empty()).then(|| median(&mut cpu)),
        });
    }
    Ok(SlidesBenchReport {
        passes,
        release_build: !cfg!(debug_assertions),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: load_average(),
        slides,
    })
}

impl SlidesBenchReport {
    pub fn write(&self, out: &mut dyn std::io::Write, json: bool) -> Result<()> {
        if json {
            let text =
                serde_json::to_string_pretty(self).map_err(|e| Error::Encoding(e.to_string()))?;
            writeln!(out, "{text}")?;
            return Ok(());
        }
        let load = |l: &Option<[f64; 3]>| match l {
            Some([a, b, c]) => format!("{a:.2} {b:.2} {c:.2}"),
            None => "n/a".into(),
        };
        writeln!(
            out,
            "Deep Zoom tiles (254 px, overlap 1, JPEG q{DEFAULT_QUALITY}), median of {} pass(es), {} build, {} CPU(s), load average {} before, {} after",
            self.passes,
            if self.release_build { "release" } else { "debug" },
            self.cpus,
            load(&self.load_before),
            load(&self.load_after),
        )?;
        writeln!(
            out,
            "  {:<28} {:>11} {:>6} {:>12} {:>14} {:>12} {:>10}",
            "slide",
            "size",
            "tiles",
            "cold tile/s",
            "warm-src tile/s",
            "warm tile/s",
            "cpu ms/tile"
        )?;
        for s in &self.slides {
            writeln!(
                out,
                "  {:<28} {:>11} {:>6} {:>12.0} {:>14.0} {:>12.0} {:>10}",
                s.name,
                format!("{}x{}", s.width, s.height),
                s.tiles,
                s.cold_tiles_per_second,
                s.warm_source_tiles_per_second,
                s.warm_tiles_per_second,
                s.cold_cpu_ms_per_tile
                    .map_or("n/a".into(), |c| format!("{c:.2}")),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_fixture_is_measured_and_every_tile_counted() {
        let report = run(&SlideSource::fixtures(), 1, None).unwrap();
        assert_eq!(report.slides.len(), 4);
        for s in &report.slides {
            let dz = DeepZoom::new(s.width, s.height, 254, 1).unwrap();
            let expected: u64 = (0..dz.level_count())
                .map(|l| {
                    let (c, r) = dz.tile_count(l).unwrap();
                    c * r
                })
                .sum();
            assert_eq!(s.tiles, expected, "{}", s.name);
            assert!(s.tile_bytes > 0 && s.cold_tiles_per_second > 0.0);
            assert!(s.warm_tiles_per_second > 0.0 && s.warm_source_tiles_per_second > 0.0);
        }
        let mut text = Vec::new();
        report.write(&mut text, false).unwrap();
        assert!(String::from_utf8(text).unwrap().contains("aperio-jpeg.svs"));
        assert!(run(&[SlideSource::parse("/nonexistent.svs")], 1, None).is_err());
        let top = run(&SlideSource::fixtures()[..1], 1, Some(1)).unwrap();
        let (c, r) = DeepZoom::new(600, 400, 254, 1)
            .unwrap()
            .tile_count(DeepZoom::new(600, 400, 254, 1).unwrap().max_level())
            .unwrap();
        assert_eq!(top.slides[0].tiles, c * r, "only the finest level");
    }
}
