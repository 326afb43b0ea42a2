//! (being written: the helper that owns this file replaces it)

use super::{Kernel, Kind};

pub fn reference(kind: Kind) -> Kernel {
    super::plain::reference(kind)
}

pub fn fast(kind: Kind) -> Kernel {
    reference(kind)
}
