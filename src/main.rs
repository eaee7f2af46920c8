mod cli;
mod cli_lifecycle;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use berth::config::{Config, LogOverrides, Overrides, TlsOverrides};

/// berth: a container image registry.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data is: every command takes these.
#[derive(clap::Args, Clone)]
struct DataArgs {
    /// TOML configuration file (also `BERTH_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory for blobs and metadata (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// How the server runs: `serve` and `config print` take these.
#[derive(clap::Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address and port to listen on (default 0.0.0.0:5000).
    #[arg(long)]
    listen: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Serve HTTPS with a self-signed certificate, generated once under
    /// <data-dir>/tls/ (the log says how to make docker/podman trust it).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
    /// Serve HTTPS with this PEM certificate chain (reloaded when it changes).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: cli::UserCommand,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage projects and their members.
    Project {
        #[command(subcommand)]
        action: cli::ProjectCommand,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage robot accounts.
    Robot {
        #[command(subcommand)]
        action: cli::RobotCommand,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage personal access tokens.
    Token {
        #[command(subcommand)]
        action: cli::TokenCommand,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Show the audit log, newest first, one JSON object a line.
    Audit {
        #[command(flatten)]
        args: cli::AuditArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Run garbage collection now (through the running server, if one
    /// serves the data directory), with progress and a summary.
    Gc {
        #[command(flatten)]
        args: cli_lifecycle::GcArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Re-hash every stored blob (rate-limited, resumable); report and
    /// quarantine the corrupt and missing ones. Exits non-zero if any.
    Scrub {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage repositories.
    Repo {
        #[command(subcommand)]
        action: cli_lifecycle::RepoCommand,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Token-signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key; tokens signed by older keys stay valid.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (defaults < file < env < flags) as TOML.
    Print {
        #[command(flatten)]
        args: ServeArgs,
    },
}

/// The effective, validated configuration.
fn load(data: &DataArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: serve.and_then(|s| s.listen.clone()),
        data_dir: data.data_dir.clone(),
        log: serve
            .filter(|s| s.log_json)
            .map(|_| LogOverrides { json: true }),
        tls: serve
            .filter(|s| s.tls_self_signed || s.tls_cert.is_some())
            .map(|s| TlsOverrides {
                cert_file: s.tls_cert.clone(),
                key_file: s.tls_key.clone(),
                self_signed: s.tls_self_signed,
            }),
    };
    let loaded = Config::load(data.config.as_deref(), &overrides)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
        .and_then(|config| Ok(config.validate().map(|()| config)?));
    if loaded.is_err() {
        // No logger yet: a misspelt variable may be why the setting is wrong.
        for var in Config::unknown_env_vars() {
            eprintln!("berth: warning: {var} names no setting and is ignored");
        }
    }
    loaded
}

/// Variables that look like settings but name none are ignored: say so.
fn warn_unknown_env() {
    for var in Config::unknown_env_vars() {
        tracing::warn!("{var} names no setting and is ignored (see `berth config print`)");
    }
}

/// Logs go to stderr through a background writer thread, so a request never
/// waits on the terminal or a pipe. Keep the guard alive to flush on exit.
fn init_logging(config: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
    guard
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// An error as one line per cause on stderr; never a backtrace, whatever
/// `RUST_BACKTRACE` says.
fn report(error: &anyhow::Error) {
    let mut text = format!("berth: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{text}");
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use cli::Access::{Read, Write};
    match cli.command {
        Command::Config {
            action: ConfigAction::Print { args },
        } => {
            let config = load(&args.data, Some(&args))?;
            for var in Config::unknown_env_vars() {
                eprintln!("berth: warning: {var} names no setting and is ignored");
            }
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Serve { args } => {
            let config = load(&args.data, Some(&args))?;
            let _log_guard = init_logging(&config);
            warn_unknown_env();
            runtime()?.block_on(berth::server::serve(config))
        }
        Command::User { action, data } => {
            let access = if matches!(action, cli::UserCommand::List) {
                Read
            } else {
                Write
            };
            admin(&data, access, |c| cli::user(c, action))
        }
        Command::Project { action, data } => {
            let access = match action {
                cli::ProjectCommand::List
                | cli::ProjectCommand::Members { .. }
                | cli::ProjectCommand::Policy { .. } => Read,
                _ => Write,
            };
            admin(&data, access, |c| cli::project(c, action))
        }
        Command::Robot { action, data } => {
            let access = match action {
                cli::RobotCommand::List { .. } => Read,
                _ => Write,
            };
            admin(&data, access, |c| cli::robot(c, action))
        }
        Command::Token { action, data } => {
            let access = match action {
                cli::TokenCommand::List { .. } => Read,
                _ => Write,
            };
            admin(&data, access, |c| cli::token(c, action))
        }
        Command::Audit { args, data } => admin(&data, Read, |c| cli::audit(c, args)),
        Command::Gc { args, data } => admin(&data, Read, |c| cli_lifecycle::gc(c, args)),
        Command::Scrub { data } => admin(&data, Read, cli_lifecycle::scrub),
        Command::Repo { action, data } => admin(&data, Read, |c| cli_lifecycle::repo(c, action)),
        Command::Keys {
            action: KeysAction::Rotate,
            data,
        } => admin(&data, Write, cli::rotate_keys),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// Runs an administration command against the configured data directory;
/// one that only reads refuses a data directory that holds no registry.
fn admin<'a, F, Fut>(data: &DataArgs, access: cli::Access, run: F) -> anyhow::Result<()>
where
    F: FnOnce(&'a Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
{
    let config: &'a Config = Box::leak(Box::new(load(data, None)?));
    // Warnings (such as the first admin's generated password) still show.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    warn_unknown_env();
    cli::check_data_dir(config, access)?;
    runtime()?.block_on(run(config))
}
