//! Rebuild the program when bpf-linker changes: cargo does not know that
//! linking for bpfel-unknown-none runs it.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo::rerun-if-changed={}", path.display()),
        Err(_) => println!(
            "cargo::warning=bpf-linker is not on PATH; run `cargo xtask setup` to install it"
        ),
    }
}
