//! Running statistics of a set of samples: count, sum, extremes, newest time and a sketch.

use platform::Timestamp;

use crate::model::Summary;
use crate::sketch::Sketch;

/// Statistics of the samples of one series in one bucket, or merged over many buckets
/// and replicas. Every part merges exactly except the sketch, whose error is bounded.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Unix microseconds of the newest sample.
    pub last_micros: i64,
    pub sketch: Sketch,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last_micros: i64::MIN,
            sketch: Sketch::default(),
        }
    }
}

impl Aggregate {
    /// Counts one finite sample taken at `at_micros`.
    pub fn add(&mut self, value: f64, at_micros: i64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last_micros = self.last_micros.max(at_micros);
        self.sketch.add(value);
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Aggregate) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.last_micros = self.last_micros.max(other.last_micros);
        self.sketch.merge(&other.sketch);
    }

    /// Builds the API form; `None` when nothing was counted.
    ///
    /// Quantiles and the mean are clamped to `[min, max]`, which holds for the true values,
    /// so a single sample reports its exact value everywhere.
    pub fn summary(&self) -> Option<Summary> {
        if self.count == 0 {
            return None;
        }
        let within = |value: f64| finite(value).clamp(self.min, self.max);
        let quantile = |q: f64| within(self.sketch.quantile(q).unwrap_or(self.min));
        Some(Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            sum: finite(self.sum),
            mean: within(self.sum / self.count as f64),
            last: Timestamp::from_unix_micros(self.last_micros).unwrap_or(Timestamp::EPOCH),
            p50: quantile(0.50),
            p90: quantile(0.90),
            p95: quantile(0.95),
            p99: quantile(0.99),
        })
    }
}

/// Makes a value printable as a JSON number.
///
/// NOTE: only a sum can leave the `f64` range, when samples near ±1.8e308 add up. It is
/// then reported as ±`f64::MAX`, or as 0 if it overflowed in both directions.
fn finite(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(f64::MIN, f64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sample_is_exact_everywhere() {
        let mut aggregate = Aggregate::default();
        aggregate.add(1234.0, 1_000_000);
        let summary = aggregate.summary().expect("one sample");
        assert_eq!(summary.count, 1);
        for value in [
            summary.min,
            summary.max,
            summary.sum,
            summary.mean,
            summary.p50,
            summary.p90,
            summary.p95,
            summary.p99,
        ] {
            assert_eq!(value, 1234.0);
        }
        assert_eq!(summary.last.unix_micros(), 1_000_000);
    }

    #[test]
    fn merge_combines_every_statistic() {
        let (mut left, mut right) = (Aggregate::default(), Aggregate::default());
        left.add(5.0, 10);
        left.add(-1.0, 30);
        right.add(7.0, 20);
        left.merge(&right);
        left.merge(&Aggregate::default());
        assert_eq!(left.count, 3);
        assert_eq!(left.sum, 11.0);
        assert_eq!(left.min, -1.0);
        assert_eq!(left.max, 7.0);
        assert_eq!(left.last_micros, 30);
        assert_eq!(left.sketch.count(), 3);
    }

    #[test]
    fn mean_stays_within_extremes() {
        let mut aggregate = Aggregate::default();
        for _ in 0..3 {
            aggregate.add(0.1, 0);
        }
        let summary = aggregate.summary().expect("samples");
        assert_eq!(summary.mean, 0.1);
    }

    #[test]
    fn overflowing_sum_is_reported_finite() {
        let mut aggregate = Aggregate::default();
        aggregate.add(f64::MAX, 0);
        aggregate.add(f64::MAX, 0);
        let summary = aggregate.summary().expect("samples");
        assert_eq!(summary.sum, f64::MAX);
        assert_eq!(summary.mean, f64::MAX);
        assert_eq!(summary.p99, f64::MAX);
    }

    #[test]
    fn empty_has_no_summary() {
        assert!(Aggregate::default().summary().is_none());
    }
}
