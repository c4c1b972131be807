# Regenerates the goldens in this folder with R `surveillance` (Debian r-cran-surveillance 1.20.3, R 4.2.2):
#   cd crates/surveillance/tests/data/r && TZ=UTC Rscript generate.R
# Output columns: t (1-based week of the input), observed, upperbound (NA where R gives NA), alarm (0/1).
# The R package is GPL-2: only its outputs are used, as test expectations.
suppressMessages(library(surveillance))
num <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
out <- function(file, t, obs, ub, alarm) {
  write.table(data.frame(t = t, observed = num(obs), upperbound = num(ub), alarm = as.integer(alarm)),
              file, sep = ",", quote = FALSE, row.names = FALSE)
}
from_disprog <- function(file, res, obs, range) out(file, range, obs[range], res$upperbound, res$alarm)
from_sts <- function(file, res, range) out(file, range, observed(res)[, 1], upperbound(res)[, 1], alarms(res)[, 1])

data(salmonella.agona)
ag <- salmonella.agona
y <- ag$observed
ags <- disProg2sts(ag)

# CUSUM transformations
r <- 200:312
from_disprog("agona_cusum_rossi.csv", algo.cusum(ag, control = list(range = r, trans = "rossi")), y, r)
from_disprog("agona_cusum_anscombe.csv", algo.cusum(ag, control = list(range = r, trans = "anscombe")), y, r)
from_disprog("agona_cusum_pearsonnegbin.csv",
             algo.cusum(ag, control = list(range = r, trans = "pearsonNegBin", alpha = 0.1)), y, r)
from_disprog("agona_cusum_k05_h4_m3.csv", algo.cusum(ag, control = list(range = r, k = 0.5, h = 4, m = 3)), y, r)

# Bayes presets
from_disprog("agona_bayes2.csv", algo.bayes(ag, control = list(range = r, b = 1, w = 6, actY = TRUE)), y, r)
from_disprog("agona_bayes3.csv", algo.bayes(ag, control = list(range = r, b = 2, w = 4, actY = FALSE, alpha = 0.01)), y, r)

# CDC historical limits: the observed column is the 4-week total R compares with the bound (R's `aggr`).
r <- 280:312
cdc <- algo.cdc(ag, control = list(range = r))
out("agona_cdc.csv", r, cdc$aggr, cdc$upperbound, cdc$alarm)
cdc2 <- algo.cdc(ag, control = list(range = r, b = 4, m = 2, alpha = 0.05))
out("agona_cdc_b4_m2_a005.csv", r, cdc2$aggr, cdc2$upperbound, cdc2$alarm)

# Farrington 1996 variants
r <- 270:312
from_disprog("agona_f1996_b5.csv", algo.farrington(ag, control = list(range = r)), y, r)
from_disprog("agona_f1996_b3_a001_half.csv",
             algo.farrington(ag, control = list(range = r, b = 3, alpha = 0.01, powertrans = "1/2")), y, r)
from_disprog("agona_f1996_b4_none_notrend.csv",
             algo.farrington(ag, control = list(range = r, b = 4, powertrans = "none", trend = FALSE)), y, r)
from_disprog("agona_f1996_b2_w2.csv", algo.farrington(ag, control = list(range = r, b = 2, w = 2)), y, r)

# Farrington flexible variants (index-based series)
r <- 290:312
ff <- function(...) farringtonFlexible(ags, control = list(range = r, ...))
from_sts("agona_ff_noufaily_b5_nbplugin.csv", ff(b = 5, w = 3, noPeriods = 10, weightsThreshold = 2.58,
         pastWeeksNotIncluded = 26, pThresholdTrend = 1, alpha = 0.05, thresholdMethod = "nbPlugin"), r)
from_sts("agona_ff_b3_p4_muan.csv", ff(b = 3, w = 2, noPeriods = 4, weightsThreshold = 2.58,
         pastWeeksNotIncluded = 10, pThresholdTrend = 0.05, alpha = 0.05, thresholdMethod = "muan"), r)
from_sts("agona_ff_defaults.csv", ff(), r)
from_sts("agona_ff_b4_notrend_none.csv", ff(b = 4, trend = FALSE, powertrans = "none", alpha = 0.01), r)
from_sts("agona_ff_b5_p10_delta_half.csv", ff(b = 5, noPeriods = 10, pastWeeksNotIncluded = 26,
         powertrans = "1/2", thresholdMethod = "delta"), r)

# Calendar-dated series: salmNewport summed over the states, and one state
data(salmNewport)
sn <- aggregate(salmNewport, by = "unit")
# (the input series is ../shared/salmnewport_germany.csv)
r <- 400:528
ffd <- function(s, ...) farringtonFlexible(s, control = list(range = r, ...))
noufaily <- list(b = 5, w = 3, noPeriods = 10, weightsThreshold = 2.58, pastWeeksNotIncluded = 26,
                 pThresholdTrend = 1, alpha = 0.05)
from_sts("salmnewport_ff_noufaily_b5_nbplugin.csv", do.call(ffd, c(list(sn), noufaily, thresholdMethod = "nbPlugin")), r)
from_sts("salmnewport_ff_noufaily_b5_muan.csv", do.call(ffd, c(list(sn), noufaily, thresholdMethod = "muan")), r)
from_sts("salmnewport_ff_noufaily_b5_delta.csv", do.call(ffd, c(list(sn), noufaily, thresholdMethod = "delta")), r)
by <- salmNewport[, "Baden.Wuerttemberg"]
write.table(data.frame(t = seq_along(epoch(by)), epoch = format(epoch(by)), observed = observed(by)[, 1], freq = 52),
            "salmnewport_bw.csv", sep = ",", quote = FALSE, row.names = FALSE)
from_sts("salmnewport_bw_ff_noufaily_nbplugin.csv", do.call(ffd, c(list(by), noufaily, thresholdMethod = "nbPlugin")), r)

# EARS with other settings
r <- 20:528
e <- function(...) earsC(sn, control = list(range = r, ...))
from_sts("salmnewport_ears_c1_default.csv", e(method = "C1"), r)
from_sts("salmnewport_ears_c2_b10.csv", e(method = "C2", baseline = 10, alpha = 0.01), r)
from_sts("salmnewport_ears_c3_minsigma.csv", e(method = "C3", minSigma = 0.5, alpha = 0.025), r)
from_sts("salmnewport_bw_ears_c3.csv", earsC(by, control = list(range = r, method = "C3", alpha = 0.05)), r)

# A sparse series (zeros, a few isolated cases, a burst at the end) for the edge cases of the regressions.
y <- rep(0, 312)
y[c(20, 75, 130, 190, 250)] <- 1
y[c(60, 61, 112, 113, 166)] <- c(2, 3, 1, 2, 4)
y[300:312] <- c(0, 2, 3, 5, 1, 0, 0, 4, 6, 0, 0, 0, 3)
write.table(data.frame(t = 1:312, observed = y), "sparse.csv", sep = ",", quote = FALSE, row.names = FALSE)
sp <- sts(observed = y, frequency = 52, start = c(2000, 1))
spd <- create.disProg(week = 1:312, observed = y, state = rep(0, 312), freq = 52)
r <- 280:312
from_disprog("sparse_f1996.csv", algo.farrington(spd, control = list(range = r, b = 5)), y, r)
from_sts("sparse_ff_noufaily_nbplugin.csv", farringtonFlexible(sp, control = c(list(range = r), noufaily,
         thresholdMethod = "nbPlugin")), r)
from_sts("sparse_ff_noufaily_muan.csv", farringtonFlexible(sp, control = c(list(range = r), noufaily,
         thresholdMethod = "muan")), r)
from_sts("sparse_ff_defaults.csv", farringtonFlexible(sp, control = list(range = r)), r)
from_disprog("sparse_bayes.csv", algo.bayes(spd, control = list(range = r)), y, r)

# The 16 German states of salmNewport (calendar-dated), one long file per method with a `unit` column.
st <- salmNewport
write.table(data.frame(t = seq_along(epoch(st)), epoch = format(epoch(st)), observed(st), check.names = FALSE),
            "salmnewport_states.csv", sep = ",", quote = FALSE, row.names = FALSE)
long <- function(file, res, range) {
  d <- do.call(rbind, lapply(seq_len(ncol(res)), function(j)
    data.frame(unit = colnames(res)[j], t = range, observed = num(observed(res)[, j]),
               upperbound = num(upperbound(res)[, j]), alarm = as.integer(alarms(res)[, j]))))
  write.table(d, file, sep = ",", quote = FALSE, row.names = FALSE)
}
r <- 366:528
long("states_ff_noufaily_nbplugin.csv", suppressWarnings(farringtonFlexible(st, control = c(list(range = r), noufaily,
     thresholdMethod = "nbPlugin"))), r)
long("states_ff_defaults.csv", suppressWarnings(farringtonFlexible(st, control = list(range = r))), r)
long("states_ears_c3.csv", earsC(st, control = list(range = r, method = "C3", alpha = 0.05)), r)

# GLR-NB (algo.glrnb defaults: mu0 from a negative binomial harmonic regression on the weeks before the range,
# dispersion estimated, c.ARL = 5, increase; the bound column is the GLR statistic, ret = "value").
for (rg in list(200:312, 150:312, 250:312)) {
  g <- algo.glrnb(ag, control = list(range = rg))
  from_disprog(sprintf("agona_glrnb_%d.csv", rg[1]), g, ag$observed, rg)
}
g <- algo.glrnb(ag, control = list(range = 200:312, c.ARL = 3))
from_disprog("agona_glrnb_carl3.csv", g, ag$observed, 200:312)
g <- algo.glrnb(ag, control = list(range = 200:312, dir = "dec"))
from_disprog("agona_glrnb_dec.csv", g, ag$observed, 200:312)
snd <- sts2disProg(sn)
g <- algo.glrnb(snd, control = list(range = 366:528))
from_disprog("salmnewport_glrnb.csv", g, observed(sn)[, 1], 366:528)

# CUSUM with a harmonic Poisson reference.
r <- 200:312
from_disprog("agona_cusum_glm.csv", algo.cusum(ag, control = list(range = r, m = "glm")), ag$observed, r)
from_disprog("agona_cusum_glm_rossi.csv", algo.cusum(ag, control = list(range = r, m = "glm", trans = "rossi")),
             ag$observed, r)
