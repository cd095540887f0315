//! Histograms in the forms a run keeps and writes: a whole HDR histogram
//! (`HistogramData`) and a packed one (`PackedHistogram`, for the many
//! per-second histograms), both serialised as base64 of HdrHistogram's V2
//! compressed encoding, readable by every HdrHistogram implementation.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// A latency histogram that serialises as base64 of HdrHistogram's V2
/// compressed encoding (readable by every HdrHistogram implementation).
#[derive(Debug, Clone)]
pub struct HistogramData(pub Histogram<u64>);

/// The same text as [`PackedHistogram`]: base64 of the V2 compressed encoding.
impl Serialize for HistogramData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PackedHistogram::pack(&self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HistogramData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(HistogramData(
            PackedHistogram::deserialize(deserializer)?.unpack(),
        ))
    }
}

impl PartialEq for HistogramData {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(other
                    .0
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())))
    }
}

/// A histogram kept small: HdrHistogram's V2 compressed encoding, for the
/// many per-second histograms a run keeps (a full histogram is ~180 KB of
/// counters; a packed second with a few dozen requests is ~100 bytes).
/// Serialises as base64, like [`HistogramData`].
#[derive(Debug, Clone, PartialEq)]
pub struct PackedHistogram(Vec<u8>);

impl PackedHistogram {
    pub fn pack(histogram: &Histogram<u64>) -> PackedHistogram {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(histogram, &mut bytes)
            .expect("serialising a histogram into memory");
        PackedHistogram(bytes)
    }

    pub fn unpack(&self) -> Histogram<u64> {
        Deserializer::new()
            .deserialize(&mut self.0.as_slice())
            .expect("a packed histogram reads back")
    }
}

impl Serialize for PackedHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for PackedHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        // Refuse a damaged one now rather than panic on unpacking it later.
        Deserializer::new()
            .deserialize::<u64, _>(&mut bytes.as_slice())
            .map_err(serde::de::Error::custom)?;
        Ok(PackedHistogram(bytes))
    }
}
