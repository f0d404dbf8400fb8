//! Links the `herald` binary as a fixed-address (non-PIE) executable on
//! Linux with glibc.
//!
//! Why: as a position-independent executable, herald's 30 MB binary carries
//! about 46,000 relative relocations that the dynamic loader applies at
//! every start, writing to 180 pages of `.data.rel.ro` and reading 1.1 MB of
//! relocation records: 451 page faults and 1.5 million instructions before
//! `main` for `herald --version`, against 199 and 0.8 million linked at a
//! fixed address (`herald preview` of the 2023 report: a third less system
//! time). `herald preview` and `herald check` are run at every save of a
//! post, where start-up is a quarter of the time.
//!
//! What it costs: the binary's own code and data are not placed at a random
//! address (the shared libraries, heap and stacks still are); herald's own
//! code is safe Rust apart from its C dependencies (SQLite, AWS-LC). Set
//! `HERALD_PIE=1` when building to keep a position-independent binary.
//!
//! Only the binary: the library, tests and examples are linked as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HERALD_PIE");
    if std::env::var_os("HERALD_PIE").is_some_and(|v| v == "1") {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
