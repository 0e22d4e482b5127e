//! The `cairn` binary: parse, run, map the outcome to a documented exit code.

mod args;
mod commands;
mod exit;
mod output;
mod progress;
mod secrets;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let json = cli.global.json;
    let code = match commands::run(cli) {
        Ok(code) => code,
        // A closed pipe (`cairn ls | head`) is not an error worth a message.
        Err(err)
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            exit::OK
        }
        Err(err) => {
            let code = exit::code_for(&err);
            output::error(&err, json);
            code
        }
    };
    std::process::exit(code);
}
