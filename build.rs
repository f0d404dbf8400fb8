//! Lays out the release binary's code in the order herald runs it.
//!
//! The kernel maps a program's code 64 KB at a time around each page it
//! runs (fault-around), so a function used once costs 64 KB of resident
//! memory. herald's start-up and its send loop touch about 3,000 functions
//! scattered over 18 MB of code: 9.4 MB of it was resident during a dry run
//! (the release before the engine, half the size, 3.7 MB). Placed together,
//! first, by the linker (`--symbol-ordering-file`), the same functions take
//! 3.4 MB, and a 100,000-recipient dry run peaks 7 MB lower
//! (scripts/bench-memory.sh). packaging/code-order.txt is the list,
//! hottest first, made by scripts/order-code.sh from a dry run and a send
//! under callgrind; a name the binary no longer has (after a toolchain
//! upgrade, a rename) is skipped by the linker, and the binary is then laid
//! out as without the list: correct, only bigger in memory. bench-memory.sh
//! says how much of the list the binary still has.
//!
//! Only where rustc links with LLD, which reads the list: x86_64 Linux with
//! GNU libc and rustc 1.90 or later (its default linker), unless RUSTFLAGS
//! picks another linker. Elsewhere the binary is linked as before.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("packaging/code-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=HERALD_NO_CODE_ORDER");
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("HERALD_NO_CODE_ORDER").is_none()
        && links_with_lld()
        && order.is_file();
    if wanted {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names the binary no longer has are expected (see above).
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// rustc 1.90 and later link x86_64 Linux programs with their own LLD,
/// unless told otherwise through RUSTFLAGS (another linker, or LLD off).
fn links_with_lld() -> bool {
    // A linker set in Cargo's settings may not be a C compiler that LLD
    // stands behind.
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker") || flags.contains("fuse-ld") {
        return flags.contains("fuse-ld=lld");
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
