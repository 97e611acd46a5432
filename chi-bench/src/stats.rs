//! Percentiles and distributions of latency samples.

use serde::Serialize;

/// Percentiles of a set of latency samples, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Sorts `samples` and summarises them.
pub fn summarize(samples: &mut [u32]) -> Summary {
    samples.sort_unstable();
    let mean = if samples.is_empty() {
        f64::NAN
    } else {
        samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64
    };
    Summary {
        n: samples.len(),
        min: percentile(samples, 0.0),
        p50: percentile(samples, 0.5),
        p90: percentile(samples, 0.9),
        p99: percentile(samples, 0.99),
        p999: percentile(samples, 0.999),
        max: percentile(samples, 1.0),
        mean,
    }
}

/// The `p` quantile (0..=1) of sorted samples (nearest rank).
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// The median of `v` (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// At most `max_points` points `(latency ns, fraction of samples ≤ it)` of the
/// empirical CDF of sorted samples, denser in the tail (for plots).
pub fn cdf_points(sorted: &[u32], max_points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(max_points + 4);
    // Half the points evenly over the body, the rest over the tail (1 - 10^-k).
    let body = max_points / 2;
    let mut fracs: Vec<f64> = (0..=body).map(|i| i as f64 / body as f64 * 0.99).collect();
    let tail = max_points - body;
    for i in 0..=tail {
        let k = 2.0 + 3.0 * i as f64 / tail as f64; // 1e-2 .. 1e-5
        fracs.push(1.0 - 10f64.powf(-k));
    }
    fracs.push(1.0);
    let mut last = usize::MAX;
    for f in fracs {
        let idx = ((n - 1) as f64 * f).round() as usize;
        if idx != last {
            out.push((sorted[idx] as f64, (idx + 1) as f64 / n as f64));
            last = idx;
        }
    }
    out
}

/// Nanoseconds of a duration, saturated to `u32` (4.29 s).
pub fn ns_u32(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}
