mod cli;

fn main() -> std::process::ExitCode {
    asc::process::keep_freed_memory();
    let args = cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message before
/// already holds (our error types print their source themselves; `{:#}` would repeat it).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}
