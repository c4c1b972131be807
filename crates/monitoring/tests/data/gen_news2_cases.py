"""Generate NEWS2 reference cases with the `vitalscore` package (PyPI, MIT licence).

Run:  python3 -m venv /tmp/vs && /tmp/vs/bin/pip install vitalscore==0.1.1
      /tmp/vs/bin/python gen_news2_cases.py > news2_vitalscore_cases.csv

Every band edge of every parameter (the value on each side of each boundary of the RCP 2017 chart), both SpO2
scales on air and on oxygen, every ACVPU level, hand-picked aggregate edges (4/5, 6/7, single 3) and a seeded
random sample over the whole grid. Each row is scored by vitalscore, not by Caravan.
"""
import csv
import random
import sys

from vitalscore import score_news2

BASE = dict(rr=16, spo2=97, o2=False, sbp=120, hr=70, acvpu="A", temp=37.0, scale2=False)

def cases():
    out = []
    def add(note, **kw):
        c = dict(BASE)
        c.update(kw)
        c["note"] = note
        out.append(c)
    for v in [1, 8, 9, 11, 12, 20, 21, 24, 25, 40]:
        add("rr edge", rr=v)
    for o2 in [False, True]:
        for v in [50, 91, 92, 93, 94, 95, 96, 100]:
            add("spo2 scale1 edge", spo2=v, o2=o2)
        for v in [50, 83, 84, 85, 86, 87, 88, 92, 93, 94, 95, 96, 97, 100]:
            add("spo2 scale2 edge", spo2=v, o2=o2, scale2=True)
    for v in [50, 90, 91, 100, 101, 110, 111, 219, 220, 280]:
        add("sbp edge", sbp=v)
    for v in [30, 40, 41, 50, 51, 90, 91, 110, 111, 130, 131, 200]:
        add("pulse edge", hr=v)
    for v in ["A", "C", "V", "P", "U"]:
        add("acvpu", acvpu=v)
    for v in [30.0, 35.0, 35.1, 36.0, 36.1, 38.0, 38.1, 39.0, 39.1, 42.0]:
        add("temp edge", temp=v)
    # Aggregate edges: 4 (low), 5 (medium), 6 (medium), 7 (high), and a single 3 with a low total.
    add("aggregate 4", rr=22, hr=95, temp=38.5)           # 2+1+1
    add("aggregate 5", rr=22, hr=95, temp=38.5, sbp=105)  # 2+1+1+1
    add("aggregate 6", rr=22, hr=115, temp=38.5, sbp=105) # 2+2+1+1
    add("aggregate 7", rr=22, hr=115, temp=39.5, sbp=105) # 2+2+2+1
    add("single 3 only", acvpu="C")
    add("single 3 total 4", rr=25, hr=95)
    add("single 3 total 5", rr=25, hr=115)
    add("oxygen alone", o2=True)
    add("oxygen scale2 target", o2=True, spo2=90, scale2=True)
    rng = random.Random(2017)
    for _ in range(400):
        scale2 = rng.random() < 0.3
        add("random",
            rr=rng.randint(4, 40), spo2=rng.randint(70, 100), o2=rng.random() < 0.3,
            sbp=rng.randint(60, 240), hr=rng.randint(25, 180),
            acvpu=rng.choice(["A", "A", "A", "C", "V", "P", "U"]),
            temp=round(rng.uniform(33.0, 41.0), 1), scale2=scale2)
    return out

w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow(["note", "resp_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "acvpu", "temperature", "spo2_scale",
            "rr_score", "spo2_score", "o2_score", "sbp_score", "pulse_score", "acvpu_score", "temp_score",
            "total", "vitalscore_risk"])
for c in cases():
    r = score_news2(c["rr"], float(c["spo2"]), c["o2"], c["sbp"], c["hr"], c["acvpu"], c["temp"],
                    use_spo2_scale2=c["scale2"])
    w.writerow([c["note"], c["rr"], c["spo2"], int(c["o2"]), c["sbp"], c["hr"], c["acvpu"], f'{c["temp"]:.1f}',
                2 if c["scale2"] else 1, r.rr_score, r.spo2_score, r.o2_score, r.sbp_score, r.hr_score,
                r.consciousness_score, r.temp_score, r.total, r.risk.value])
