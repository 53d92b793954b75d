//! The built-in `base` producer (filled in by the csc/base work).
