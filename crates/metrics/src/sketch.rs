//! A mergeable quantile sketch with a guaranteed relative error, after DDSketch (Masson,
//! Rim and Lee, "DDSketch: A Fast and Fully-Mergeable Quantile Sketch with Relative-Error
//! Guarantees", VLDB 2019).
//!
//! Magnitudes are counted in logarithmic bins: bin `k` covers `(γ^(k-1), γ^k]` with
//! `γ = (1 + α) / (1 - α)` and reports `2γ^k / (γ + 1)`, which lies within a factor
//! `1 ± α` of every magnitude in the bin. Positive and negative values have their own
//! bins; zero has a counter.
//!
//! Bins are stored sparsely, as sorted `(key, count)` pairs. The `sketches-ddsketch` crate
//! (0.4) uses a dense store that allocates at least 128 bins (1 KiB) per sign. This service
//! keeps one sketch per series and roll-up bucket, 1440 a day per series at the default
//! interval, and most buckets see only a few distinct magnitudes.

use std::sync::LazyLock;

/// Relative accuracy α of every quantile estimate: see [`Sketch::quantile`].
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Most bins kept per sign. They cover magnitudes spanning a factor of `γ^2048 ≈ 6·10^17`
/// before the lowest bins are folded together.
pub const MAX_BINS: usize = 2048;

/// First byte of the encoded form; changes whenever the mapping or the layout does.
const ENCODING_VERSION: u8 = 1;

/// The logarithmic mapping between magnitudes and bin keys.
struct Mapping {
    gamma_ln: f64,
    inverse_gamma_ln: f64,
    /// `ln(2 / (γ + 1))`, added to `k·ln γ` before `exp`, so no power of γ is computed on
    /// its own (it would overflow for the highest keys).
    estimate_offset_ln: f64,
}

static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
    let gamma_ln = gamma.ln();
    Mapping {
        gamma_ln,
        inverse_gamma_ln: 1.0 / gamma_ln,
        estimate_offset_ln: (2.0 / (gamma + 1.0)).ln(),
    }
});

impl Mapping {
    /// Maps a positive normal magnitude to its bin key, within ±35 500 for `f64`.
    fn key(&self, magnitude: f64) -> i32 {
        (magnitude.ln() * self.inverse_gamma_ln).ceil() as i32
    }

    /// Returns the value reported for every magnitude in bin `key`.
    fn estimate(&self, key: i32) -> f64 {
        (f64::from(key) * self.gamma_ln + self.estimate_offset_ln).exp()
    }
}

/// An error reading encoded sketch bytes.
#[derive(Debug, thiserror::Error)]
#[error("invalid encoded sketch: {0}")]
pub struct DecodeError(&'static str);

/// Counts of values in logarithmic bins, mergeable with any other sketch.
///
/// Accuracy: for `n` values, [`Sketch::quantile`]`(q)` estimates the `q`-quantile by the
/// nearest-rank method, the `⌈q·n⌉`-th smallest value (at least the smallest), within a
/// relative error of [`RELATIVE_ACCURACY`] (1%), up to floating-point rounding. Two exceptions: magnitudes below
/// `f64::MIN_POSITIVE` (subnormals) count as zero, and once a sign's magnitudes span more
/// than [`MAX_BINS`] bins, its lowest bins are folded upward, so estimates of its smallest
/// magnitudes come out too large.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sketch {
    positive: Bins,
    negative: Bins,
    zero_count: u64,
    count: u64,
}

/// Sorted `(key, count)` pairs with non-zero counts and strictly increasing keys.
#[derive(Clone, Debug, Default, PartialEq)]
struct Bins(Vec<(i32, u64)>);

impl Bins {
    fn add(&mut self, key: i32, count: u64) {
        match self.0.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(index) => self.0[index].1 += count,
            Err(index) => {
                self.0.insert(index, (key, count));
                self.fold_excess();
            }
        }
    }

    fn merge(&mut self, other: &Bins) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }

        let mut merged = Vec::with_capacity(self.0.len().max(other.0.len()));
        let (mut left, mut right) = (self.0.iter().peekable(), other.0.iter().peekable());
        loop {
            let next = match (left.peek(), right.peek()) {
                (Some(&&(a, m)), Some(&&(b, n))) if a == b => {
                    left.next();
                    right.next();
                    (a, m + n)
                }
                (Some(&&a), Some(&&b)) if a.0 < b.0 => {
                    left.next();
                    a
                }
                (_, Some(&&b)) => {
                    right.next();
                    b
                }
                (Some(&&a), None) => {
                    left.next();
                    a
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.0 = merged;
        self.fold_excess();
    }

    /// Keeps at most `MAX_BINS` bins by adding the lowest ones into the lowest kept bin.
    fn fold_excess(&mut self) {
        if self.0.len() <= MAX_BINS {
            return;
        }
        let excess = self.0.len() - MAX_BINS;
        let folded: u64 = self.0[..excess].iter().map(|&(_, count)| count).sum();
        self.0.drain(..excess);
        self.0[0].1 += folded;
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|&(_, count)| count).sum()
    }

    /// Finds the key of the bin containing the value of `rank` (0-based), walking the bins
    /// by ascending or descending key.
    fn key_at_rank(&self, rank: u64, ascending: bool) -> Option<i32> {
        let mut seen = 0;
        let mut visit = |&(key, count): &(i32, u64)| {
            seen += count;
            (seen > rank).then_some(key)
        };
        if ascending {
            self.0.iter().find_map(&mut visit)
        } else {
            self.0.iter().rev().find_map(&mut visit)
        }
    }
}

impl Sketch {
    /// Counts one value. NaN counts as zero; callers reject non-finite values first.
    pub fn add(&mut self, value: f64) {
        let magnitude = value.abs();
        if magnitude >= f64::MIN_POSITIVE {
            let key = MAPPING.key(magnitude);
            if value > 0.0 {
                self.positive.add(key, 1);
            } else {
                self.negative.add(key, 1);
            }
        } else {
            self.zero_count += 1;
        }
        self.count += 1;
    }

    /// Adds every count of `other` into this sketch.
    pub fn merge(&mut self, other: &Sketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero_count += other.zero_count;
        self.count += other.count;
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Estimates the `q`-quantile, `q` in `[0, 1]`: the `⌈q·n⌉`-th smallest of the `n`
    /// values counted; `None` when the sketch is empty. See the type's documentation for
    /// the accuracy.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = nearest_rank(q, self.count);

        let negative_count = self.negative.total();
        if rank < negative_count {
            // The largest negative magnitudes are the smallest values.
            let key = self.negative.key_at_rank(rank, false)?;
            return Some(-MAPPING.estimate(key));
        }
        let rank = rank - negative_count;
        if rank < self.zero_count {
            return Some(0.0);
        }
        let key = self.positive.key_at_rank(rank - self.zero_count, true)?;
        Some(MAPPING.estimate(key))
    }

    /// Writes the sketch as bytes: a version, the zero count, then for each sign the number
    /// of bins and each bin as a zigzag key delta and a count, all LEB128 varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 3 * (self.positive.0.len() + self.negative.0.len()));
        out.push(ENCODING_VERSION);
        write_varint(&mut out, self.zero_count);
        for bins in [&self.positive, &self.negative] {
            write_varint(&mut out, bins.0.len() as u64);
            let mut previous = 0i64;
            for &(key, count) in &bins.0 {
                write_varint(&mut out, zigzag(i64::from(key) - previous));
                write_varint(&mut out, count);
                previous = i64::from(key);
            }
        }
        out
    }

    /// Reads bytes written by [`Sketch::encode`], checking every invariant.
    pub fn decode(bytes: &[u8]) -> Result<Sketch, DecodeError> {
        let mut input = bytes;
        let version = read_byte(&mut input)?;
        if version != ENCODING_VERSION {
            return Err(DecodeError("unknown version"));
        }
        let zero_count = read_varint(&mut input)?;
        let positive = read_bins(&mut input)?;
        let negative = read_bins(&mut input)?;
        if !input.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }

        let count = [zero_count, positive.total(), negative.total()]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            .ok_or(DecodeError("count overflows"))?;
        Ok(Sketch {
            positive,
            negative,
            zero_count,
            count,
        })
    }
}

/// The 0-based rank of the `q`-quantile of `n` values by the nearest-rank method.
fn nearest_rank(q: f64, n: u64) -> u64 {
    // Shaving a relative 1e-12 keeps products such as 0.07 * 100 = 7.000000000000001
    // from moving to the next rank.
    let position = (q.clamp(0.0, 1.0) * n as f64 * (1.0 - 1e-12)).ceil() as u64;
    position.saturating_sub(1).min(n - 1)
}

fn read_bins(input: &mut &[u8]) -> Result<Bins, DecodeError> {
    let len = read_varint(input)?;
    if len > MAX_BINS as u64 {
        return Err(DecodeError("too many bins"));
    }
    let mut bins = Vec::with_capacity(len as usize);
    let mut previous = 0i64;
    for index in 0..len {
        let delta = unzigzag(read_varint(input)?);
        if index > 0 && delta <= 0 {
            return Err(DecodeError("bin keys are not increasing"));
        }
        let key = previous
            .checked_add(delta)
            .and_then(|key| i32::try_from(key).ok())
            .ok_or(DecodeError("bin key out of range"))?;
        let count = read_varint(input)?;
        if count == 0 {
            return Err(DecodeError("empty bin"));
        }
        bins.push((key, count));
        previous = i64::from(key);
    }
    Ok(Bins(bins))
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_byte(input: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&first, rest) = input.split_first().ok_or(DecodeError("unexpected end"))?;
    *input = rest;
    Ok(first)
}

fn read_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = read_byte(input)?;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(DecodeError("varint overflows"));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the exact nearest-rank quantile, the value the sketch estimates. Rounding
    /// finds it because `q·n` is a whole number for every `q` and `n` these tests use.
    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let position = (q * sorted.len() as f64).round() as usize;
        sorted[position.clamp(1, sorted.len()) - 1]
    }

    fn assert_within_accuracy(values: &mut [f64]) {
        let mut sketch = Sketch::default();
        for &value in values.iter() {
            sketch.add(value);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            let exact = exact_quantile(values, q);
            let estimate = sketch.quantile(q).expect("not empty");
            let error = (estimate - exact).abs();
            assert!(
                error <= RELATIVE_ACCURACY * exact.abs() * (1.0 + 1e-9),
                "q={q}: estimate {estimate}, exact {exact}"
            );
        }
    }

    #[test]
    fn quantiles_within_accuracy_for_uniform_values() {
        let mut values: Vec<f64> = (1..=10_000).map(f64::from).collect();
        assert_within_accuracy(&mut values);
    }

    #[test]
    fn quantiles_within_accuracy_across_magnitudes() {
        // Exponentially spread, both signs and zeros: 1e-6 up to about 1e9.
        let mut values: Vec<f64> = (0..3000)
            .map(|i| {
                let magnitude = 1e-6 * 1.007f64.powi(i);
                match i % 3 {
                    0 => magnitude,
                    1 => -magnitude,
                    _ => 0.0,
                }
            })
            .collect();
        assert_within_accuracy(&mut values);
    }

    #[test]
    fn extreme_magnitudes_stay_finite() {
        // Sorted: -MAX, a subnormal, MIN_POSITIVE, 1, MAX.
        let mut sketch = Sketch::default();
        for value in [f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, 1.0] {
            sketch.add(value);
        }
        assert_eq!(sketch.quantile(0.25), Some(0.0), "subnormals count as zero");
        let smallest_normal = sketch.quantile(0.5).expect("not empty");
        assert!((smallest_normal / f64::MIN_POSITIVE - 1.0).abs() <= RELATIVE_ACCURACY);
        let lowest = sketch.quantile(0.0).expect("not empty");
        assert!(lowest < -f64::MAX * 0.98, "{lowest}");
    }

    #[test]
    fn nearest_rank_takes_smallest_covering_value() {
        assert_eq!(nearest_rank(0.0, 10), 0);
        assert_eq!(nearest_rank(0.5, 10), 4);
        assert_eq!(nearest_rank(0.99, 2), 1);
        assert_eq!(nearest_rank(0.5, 1), 0);
        assert_eq!(nearest_rank(1.0, 10), 9);
        assert_eq!(nearest_rank(0.07, 100), 6);
        assert_eq!(nearest_rank(0.99, 1000), 989);
    }

    #[test]
    fn empty_sketch_has_no_quantile() {
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    #[test]
    fn merge_equals_adding_everything() {
        let (mut left, mut right, mut all) =
            (Sketch::default(), Sketch::default(), Sketch::default());
        for i in 0..500 {
            let value = f64::from(i) * 3.7 - 400.0;
            if i % 2 == 0 {
                left.add(value);
            } else {
                right.add(value);
            }
            all.add(value);
        }
        left.merge(&right);
        assert_eq!(left, all);
    }

    #[test]
    fn bins_are_bounded_by_folding_lowest() {
        let mut sketch = Sketch::default();
        let mut magnitude = 1e-300;
        while magnitude < 1e300 {
            sketch.add(magnitude);
            magnitude *= 1.03;
        }
        assert_eq!(sketch.positive.0.len(), MAX_BINS);
        assert_eq!(sketch.positive.total(), sketch.count());
        let top = sketch.quantile(1.0).expect("not empty");
        assert!((top / (magnitude / 1.03) - 1.0).abs() <= RELATIVE_ACCURACY);
    }

    #[test]
    fn encoding_round_trips() {
        let mut sketch = Sketch::default();
        for value in [0.0, 1.5, -2.0, 1e12, -1e-12, 1.5, 0.0, 42.0] {
            sketch.add(value);
        }
        let bytes = sketch.encode();
        assert_eq!(Sketch::decode(&bytes).expect("valid"), sketch);
        assert_eq!(
            Sketch::decode(&Sketch::default().encode()).expect("valid"),
            Sketch::default()
        );
    }

    #[test]
    fn decode_rejects_damaged_bytes() {
        let mut sketch = Sketch::default();
        for value in [1.0, 2.0, 300.0, -7.0] {
            sketch.add(value);
        }
        let bytes = sketch.encode();
        for len in 0..bytes.len() {
            assert!(
                Sketch::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Sketch::decode(&trailing).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(Sketch::decode(&version).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(read_varint(&mut out.as_slice()).expect("valid"), value);
        }
        for value in [0, 1, -1, i64::from(i32::MIN), i64::from(i32::MAX)] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
    }
}
