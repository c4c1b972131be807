//! Times the metapopulation SEIR solve of the benchmark alone (for profiling with perf or callgrind):
//! `cargo run --release -p forecast --example seir_solve -- [REPEATS] [dense] [tsit] [max] [reuse] [rhs] [portable]`
//! (`portable`: the portable build of the loops even where the CPU has AVX2, see `forecast::simd`).

use forecast::bench::benchmark_model;
use forecast::ode::{ErrorNorm, Method, Rk5};
use std::time::Instant;

fn main() -> forecast::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let dense = args.iter().any(|a| a == "dense");
    let regions: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("regions="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let simd = !args.iter().any(|a| a == "portable");
    let (model, y0) = benchmark_model(regions, 5, dense, 42)?;
    let model = model.with_simd(simd);
    let method = if args.iter().any(|a| a == "tsit") {
        Method::Tsitouras
    } else {
        Method::DormandPrince
    };
    // `max`: the max norm at ten times the tolerances (the bench's third line).
    let mut solver = if args.iter().any(|a| a == "max") {
        Rk5::new(1e-5, 1e-5)?
            .with_method(method)
            .with_error_norm(ErrorNorm::Max)
    } else {
        Rk5::new(1e-6, 1e-6)?.with_method(method)
    }
    .with_simd(simd);
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    let mut steps = 0;
    for _ in 0..repeats {
        let t0 = Instant::now();
        let (states, stats) = model.simulate(&y0, 180, &mut solver)?;
        steps = stats.steps;
        best = best.min(t0.elapsed().as_secs_f64());
        checksum = states[states.len() - 1];
    }
    if args.iter().any(|a| a == "reuse") {
        // The same solve into one reused output buffer, and with output at the last day only.
        let t_eval: Vec<f64> = (0..=180).map(|d| d as f64).collect();
        let mut out = Vec::new();
        for (label, times) in [
            ("daily output, reused buffer", &t_eval[..]),
            ("final day only", &t_eval[180..]),
        ] {
            let mut best = f64::INFINITY;
            for _ in 0..repeats {
                let t0 = Instant::now();
                solver.solve(&model, 0.0, &y0, times, &mut out)?;
                best = best.min(t0.elapsed().as_secs_f64());
            }
            println!("{label}: {:.3} ms", best * 1e3);
        }
    }
    if args.iter().any(|a| a == "rhs") {
        use forecast::ode::OdeSystem;
        let mut d = vec![0.0; y0.len()];
        let mut best_rhs = f64::INFINITY;
        for _ in 0..repeats {
            let t0 = Instant::now();
            for _ in 0..584 {
                model.rhs(0.0, &y0, &mut d);
            }
            best_rhs = best_rhs.min(t0.elapsed().as_secs_f64());
        }
        println!("584 rhs evaluations: {:.3} ms", best_rhs * 1e3);
    }
    if let Some(path) = args.iter().find_map(|a| a.strip_prefix("dump=")) {
        let (states, stats) = model.simulate(&y0, 180, &mut solver)?;
        let bytes: Vec<u8> = states.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|source| forecast::ForecastError::Io {
            path: path.into(),
            source,
        })?;
        println!("{stats:?}");
    }
    println!(
        "best {:.3} ms over {repeats} (last value {checksum}); {steps} steps, {:.2} ns per state per step",
        best * 1e3,
        best * 1e9 / (steps * 4 * regions) as f64
    );
    Ok(())
}
