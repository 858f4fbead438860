//! Unit tests of the tree internals (they also run under Miri).
