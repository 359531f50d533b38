//! `plot`: placeholder until its issue lands; it says so instead of pretending.

fn main() -> std::process::ExitCode {
    eprintln!("plot: not implemented yet in this version of Recap (see docs/capture.md for what exists)");
    std::process::ExitCode::from(2)
}
