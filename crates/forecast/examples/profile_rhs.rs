//! Times the pieces of the metapopulation benchmark in CPU time (development aid).
use cpu_time::ThreadTime;
use forecast::ode::{Dopri5, OdeSystem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (model, y0) = forecast::bench::benchmark_model(1000, 5, false, 42)?;
    let mut d = vec![0.0; y0.len()];
    let best = |f: &mut dyn FnMut()| {
        (0..10)
            .map(|_| {
                let t = ThreadTime::now();
                f();
                t.elapsed()
            })
            .min()
    };
    println!(
        "584 rhs: {:?}",
        best(&mut || for _ in 0..584 {
            model.rhs(0.0, &y0, &mut d)
        })
    );
    let mut s = Dopri5::new(1e-6, 1e-6)?;
    let mut out = Vec::new();
    println!(
        "solve, no output: {:?}",
        best(&mut || {
            let _ = s.solve(&model, 0.0, &y0, &[180.0], &mut out);
        })
    );
    let te: Vec<f64> = (0..=180).map(|v| v as f64).collect();
    println!(
        "solve, daily output reused buffer: {:?}",
        best(&mut || {
            let _ = s.solve(&model, 0.0, &y0, &te, &mut out);
        })
    );
    println!(
        "simulate (fresh buffer): {:?}",
        best(&mut || {
            let _ = model.simulate(&y0, 180, &mut s);
        })
    );
    Ok(())
}
