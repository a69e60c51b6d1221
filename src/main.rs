use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = asc_cli::Cli::parse();
    match asc_cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

#[path = "cli/mod.rs"]
mod asc_cli;
