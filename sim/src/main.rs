//! `cargo sim`: the chaos campaign in the simulator.

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    sim::cmd::main()
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!("sim: this is the std build; the simulator runs in the madsim build: use `cargo sim` (see .cargo/config.toml)");
    std::process::ExitCode::from(2)
}
