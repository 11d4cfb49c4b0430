//! Sliding windows (Kafka Streams `SlidingWindows`).

use super::keys::Due;
use super::{Add, Agg, Ctx};
use crate::transform::CallFailure;

pub fn add(_ctx: &mut Ctx<'_>, _size: u64, _add: &Add<'_>) -> Result<bool, CallFailure> {
    todo!("sliding windows")
}

pub fn close(_ctx: &mut Ctx<'_>, _size: u64, _due: &Due) -> Result<Option<(i64, Agg)>, CallFailure> {
    todo!("sliding windows")
}
