//! berth: parse the command line, set up logging, run one command, map errors to an
//! exit code (1 for runtime failures, 64 for bad usage or configuration).

mod cli;
mod cmd;
mod config;
mod control;
mod machines;
mod metrics;
mod service;
mod tenants;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        cli::Command::Serve(args) => cmd::serve::run(*args),
        cli::Command::Machine { command, common } => cmd::machine::run(&common, &command),
        cli::Command::Status {
            format,
            json,
            common,
        } => cmd::status::run(&common, &format.unwrap_or(cli::OutputFormat::table(json))),
        cli::Command::Docker { command, common } => cmd::docker::run(&common, &command),
        cli::Command::Install(args) => cmd::install::install(&args),
        cli::Command::Uninstall(args) => cmd::install::uninstall(&args),
        cli::Command::Tenant {
            command,
            config,
            host,
        } => cmd::tenant::run(
            &cli::CommonArgs {
                config,
                socket: host,
            },
            &command,
        ),
        cli::Command::Policy { command } => cmd::policy::run(&command),
        cli::Command::Completion { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "berth", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            if e.downcast_ref::<cmd::UsageError>().is_some() {
                ExitCode::from(64)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The request span's fields (its trace id) ride on every line logged inside it.
        cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
