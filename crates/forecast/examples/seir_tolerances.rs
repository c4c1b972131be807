//! Work against accuracy on the benchmark model: right-hand-side evaluations, steps and the daily trajectory's
//! error (against a tight Tsitouras solve at 1e-12; the bench uses SciPy's DOP853, which it matches to 1e-10) for
//! each pair and error norm over a range of tolerances, errors in the bench's units (rtol = atol = 1e-6):
//! `cargo run --release -p forecast --example seir_tolerances -- [dense] [seed=N]`.

use forecast::bench::{benchmark_model, trajectory_error};
use forecast::ode::{ErrorNorm, Method, Rk5};
fn main() -> forecast::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dense = args.iter().any(|a| a == "dense");
    let seed: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("seed="))
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let (model, y0) = benchmark_model(1000, 5, dense, seed)?;
    let t: Vec<f64> = (0..=180).map(|d| d as f64).collect();
    let mut reference = Vec::new();
    Rk5::new(1e-12, 1e-12)?
        .with_method(Method::Tsitouras)
        .solve(&model, 0.0, &y0, &t, &mut reference)?;
    let runs: [(Method, ErrorNorm, f64); 10] = [
        (Method::DormandPrince, ErrorNorm::Rms, 1e-6),
        (Method::Tsitouras, ErrorNorm::Rms, 1e-6),
        (Method::Tsitouras, ErrorNorm::Rms, 1.5e-6),
        (Method::Tsitouras, ErrorNorm::Rms, 2e-6),
        (Method::Tsitouras, ErrorNorm::Max, 5e-6),
        (Method::Tsitouras, ErrorNorm::Max, 8e-6),
        (Method::Tsitouras, ErrorNorm::Max, 1e-5),
        (Method::Tsitouras, ErrorNorm::Max, 1.2e-5),
        (Method::DormandPrince, ErrorNorm::Max, 1e-5),
        (Method::DormandPrince, ErrorNorm::Max, 5e-6),
    ];
    for (m, norm, tol) in runs {
        let mut out = Vec::new();
        let st = Rk5::new(tol, tol)?
            .with_method(m)
            .with_error_norm(norm)
            .solve(&model, 0.0, &y0, &t, &mut out)?;
        let (mx, rms) = trajectory_error(&out, &reference, 1e-6, 1e-6);
        println!(
            "{m:?} {norm:?} tol {tol:e}: {} evals {} steps {} rej, max {mx:.2e} rms {rms:.2}",
            st.rhs_evals, st.steps, st.rejected
        );
    }
    Ok(())
}
