//! Host bindings of the WIT world, one module per world version so that
//! plugins compiled against an older version keep loading when the world
//! evolves (the layout Zed's extension host uses).

pub mod v0_1;

pub use v0_1::weir::transform::types::{Header, InputBatch, InputRecord, OutputBatch, OutputRecord, Span, WindowAdd};
pub use v0_1::weir::transform::windows::{Aggregation, EmitMode, Hopping, WindowBatch, WindowKind, WindowResult, WindowSpec};

impl Span {
    pub const EMPTY: Span = Span { start: 0, len: 0 };

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }

    /// The bytes of this span in `data`, or `None` if it lies outside.
    pub fn get(self, data: &[u8]) -> Option<&[u8]> {
        data.get(self.start as usize..(self.start as usize).checked_add(self.len as usize)?)
    }
}
