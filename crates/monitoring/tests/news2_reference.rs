//! NEWS2 against 500 reference cases from the `vitalscore` package (see tests/data/README.md): every band edge of
//! every parameter, both SpO2 scales on air and on oxygen, aggregate edges and a random sample.

use monitoring::news2::{score, Acvpu, Risk, Spo2Scale, Vitals};

#[test]
fn news2_matches_vitalscore_at_every_band_edge() {
    let text = include_str!("data/news2_vitalscore_cases.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let num = |name: &str| f[col(name)].parse::<f64>().unwrap();
        let int = |name: &str| f[col(name)].parse::<u8>().unwrap();
        let v = Vitals {
            respiration_rate: Some(num("resp_rate")),
            spo2: Some(num("spo2")),
            on_oxygen: Some(f[col("on_oxygen")] == "1"),
            systolic_bp: Some(num("systolic_bp")),
            pulse: Some(num("pulse")),
            consciousness: Some(Acvpu::from_letter(f[col("acvpu")]).unwrap()),
            temperature: Some(num("temperature")),
        };
        let scale = if f[col("spo2_scale")] == "2" {
            Spo2Scale::Scale2
        } else {
            Spo2Scale::Scale1
        };
        let n = score(&v, scale).unwrap();
        let got = [
            n.respiration_rate.unwrap(),
            n.spo2.unwrap(),
            n.air_or_oxygen.unwrap(),
            n.systolic_bp.unwrap(),
            n.pulse.unwrap(),
            n.consciousness.unwrap(),
            n.temperature.unwrap(),
            n.total(),
        ];
        let want = [
            int("rr_score"),
            int("spo2_score"),
            int("o2_score"),
            int("sbp_score"),
            int("pulse_score"),
            int("acvpu_score"),
            int("temp_score"),
            int("total"),
        ];
        // vitalscore reports the RCP's low-medium (a single 3, total < 5) as "Medium".
        let risk = match n.risk() {
            Risk::Low => "Low",
            Risk::LowMedium | Risk::Medium => "Medium",
            Risk::High => "High",
        };
        if got != want || risk != f[col("vitalscore_risk")] {
            failures.push(format!("{line}: got {got:?} {risk}"));
        }
        if n.risk() == Risk::LowMedium {
            assert!(n.total() < 5 && n.has_single_three(), "{line}");
        }
        checked += 1;
    }
    assert_eq!(checked, 500);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
