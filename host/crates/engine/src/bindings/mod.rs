//! Host bindings of the WIT world, one module per world version so that
//! plugins compiled against an older version keep loading when the world
//! evolves (the layout Zed's extension host uses). Each module converts its
//! generated types to and from the host's own (`weir_abi`).

pub mod v0_1;
