//! Sets `--cfg ctxtree_compact`, the build that trades cycles for flash (see README,
//! "Firmware"): on by default for bare-metal targets (`target_os = "none"`); the environment
//! variable `CTXTREE_COMPACT=1` turns it on anywhere (the test suite and the loom models run
//! it on the host), `CTXTREE_COMPACT=0` turns it off.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ctxtree_compact)");
    println!("cargo::rerun-if-env-changed=CTXTREE_COMPACT");
    println!("cargo::rerun-if-changed=build.rs");
    let bare_metal = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "none");
    let compact = match std::env::var("CTXTREE_COMPACT").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => bare_metal,
    };
    if compact {
        println!("cargo::rustc-cfg=ctxtree_compact");
    }
}
