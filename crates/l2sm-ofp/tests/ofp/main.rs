//! Codec tests against Open vSwitch 3.1 plus property and robustness tests.
//!
//! - `fixtures`: bytes captured from `ovs-vswitchd` and `ovs-ofctl` decode to the expected
//!   structs and re-encode to the very same bytes.
//! - `golden`: our encodings, printed by `ovs-ofctl ofp-print`, read as intended.
//! - `roundtrip`: `decode(encode(x)) == x` for generated messages of every variant.
//! - `robustness`: `decode` returns instead of panicking on arbitrary and mutated input.

mod builders;
mod fixtures;
mod golden;
mod golden_more;
mod golden_oxm;
mod ovs;
mod robustness;
mod roundtrip;
mod session;
mod strategies;
