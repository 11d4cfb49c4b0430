//! The aggregate of one window.

use weir_abi::Aggregation;

/// Count, sum, min and max are kept together so every built-in aggregation
/// (and the mean) reads from the same record; custom aggregations keep the
/// transform's accumulator.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub custom: Option<Vec<u8>>,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            custom: None,
        }
    }
}

impl Agg {
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Combines two built-in aggregates (custom ones merge in the guest).
    pub fn combine(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value reported for `aggregation`.
    pub fn value(&self, aggregation: Aggregation) -> f64 {
        match aggregation {
            Aggregation::Count => self.count as f64,
            Aggregation::Sum => self.sum,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Mean if self.count > 0 => self.sum / self.count as f64,
            Aggregation::Mean | Aggregation::Custom => 0.0,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.sum.to_be_bytes());
        out.extend_from_slice(&self.min.to_be_bytes());
        out.extend_from_slice(&self.max.to_be_bytes());
        if let Some(c) = &self.custom {
            out.extend_from_slice(c);
        }
    }

    /// Decodes what [`Agg::encode`] wrote; `custom` says whether the tail is
    /// a custom accumulator.
    pub fn decode(bytes: &[u8], custom: bool) -> Option<Agg> {
        let word = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .map(|b| <[u8; 8]>::try_from(b).expect("an 8-byte slice"))
        };
        Some(Agg {
            count: u64::from_be_bytes(word(0)?),
            sum: f64::from_be_bytes(word(1)?),
            min: f64::from_be_bytes(word(2)?),
            max: f64::from_be_bytes(word(3)?),
            custom: custom.then(|| bytes[32..].to_vec()),
        })
    }
}
