//! loom models: one file per race. Compiled into the library's unit tests under
//! `--cfg ctxtree_loom` (see `ci/loom.sh`).
