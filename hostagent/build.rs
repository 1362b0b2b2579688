//! Builds the test guest (hostagent/testguest: C + assembly, PVH ELF at 1 MiB) with gcc.
//! The flags keep the guest to plain integer instructions: KVM PVM cannot run SSE/AVX.

use std::path::PathBuf;
use std::process::Command;

const FLAGS: &[&str] = &[
    "-ffreestanding",
    "-nostdlib",
    "-mno-red-zone",
    "-fno-pic",
    "-static",
    "-no-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-mgeneral-regs-only",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
];

fn main() {
    let src = PathBuf::from("testguest");
    for f in ["entry.S", "main.c", "guest.ld"] {
        println!("cargo:rerun-if-changed=testguest/{f}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("strata-testguest.elf");
    let cc = std::env::var("STRATA_GUEST_CC").unwrap_or_else(|_| "gcc".into());
    let status = Command::new(&cc)
        .args(FLAGS)
        .arg("-T")
        .arg(src.join("guest.ld"))
        .arg("-o")
        .arg(&out)
        .arg(src.join("entry.S"))
        .arg(src.join("main.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc} to build the test guest (install gcc): {e}"));
    assert!(status.success(), "building the test guest failed");
    println!("cargo:rustc-env=STRATA_TESTGUEST={}", out.display());
}
