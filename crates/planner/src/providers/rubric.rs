//! The rubric's thresholds: a figure (uptime %, p95 TTFT, RTT, price variation, sequences
//! that fit) to a score from 1 to 5, and the statistics the figures come from.

/// 5 when `v <= t[0]`, 4 when `<= t[1]`, ... 1 above `t[3]` (lower is better).
fn lower_better(v: f64, t: [f64; 4]) -> u8 {
    5 - t.iter().take_while(|&&x| v > x).count() as u8
}

/// 5 when `v >= t[0]`, ... 1 below `t[3]` (higher is better).
fn higher_better(v: f64, t: [f64; 4]) -> u8 {
    5 - t.iter().take_while(|&&x| v < x).count() as u8
}

pub fn uptime_score(pct: f64) -> u8 {
    higher_better(pct, [99.95, 99.9, 99.5, 99.0])
}

pub fn ttft_score(p95_ms: f64) -> u8 {
    lower_better(p95_ms, [500.0, 1000.0, 1500.0, 2500.0])
}

pub fn rtt_score(ms: f64) -> u8 {
    lower_better(ms, [50.0, 100.0, 150.0, 250.0])
}

/// By the coefficient of variation (standard deviation / mean) of prices.
pub fn price_variation_score(cv: f64) -> u8 {
    lower_better(cv, [0.02, 0.05, 0.10, 0.20])
}

/// By the full-context sequences that fit at once; 1 when not even one does.
pub fn fit_score(max_sequences: u64) -> u8 {
    match max_sequences {
        32.. => 5,
        16..=31 => 4,
        8..=15 => 3,
        1..=7 => 2,
        0 => 1,
    }
}

/// Standard deviation / mean (population); `None` for fewer than two values or a zero mean.
pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some(var.sqrt() / mean)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(uptime_score(100.0), 5);
        assert_eq!(uptime_score(99.95), 5);
        assert_eq!(uptime_score(99.9), 4);
        assert_eq!(uptime_score(99.7), 3);
        assert_eq!(uptime_score(99.0), 2);
        assert_eq!(uptime_score(98.0), 1);
        assert_eq!(ttft_score(400.0), 5);
        assert_eq!(ttft_score(1500.0), 3);
        assert_eq!(ttft_score(3000.0), 1);
        assert_eq!(rtt_score(50.0), 5);
        assert_eq!(rtt_score(120.0), 3);
        assert_eq!(price_variation_score(0.0), 5);
        assert_eq!(price_variation_score(0.3), 1);
        assert_eq!(fit_score(57), 5);
        assert_eq!(fit_score(4), 2);
        assert_eq!(fit_score(0), 1);
    }

    #[test]
    fn statistics() {
        // Prices 2, 4: mean 3, population sd 1 → CV 1/3.
        let cv = coefficient_of_variation(&[2.0, 4.0]).unwrap();
        assert!((cv - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(coefficient_of_variation(&[2.0]), None);
        // Nearest rank: p95 of 1..=20 is the 19th value; p50 of 1..=4 is the 2nd.
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 95.0), Some(19));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
