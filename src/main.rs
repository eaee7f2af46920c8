mod cli;

use std::path::PathBuf;

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

#[derive(clap::Args, Clone)]
struct Common {
    /// TOML configuration file (also `BERTH_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address and port to listen on (default 0.0.0.0:5000).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory for blobs and metadata (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Serve HTTPS with a self-signed certificate, generated once under
    /// <data-dir>/tls/ (the log says how to make docker/podman trust it).
    #[arg(long, global = true, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
    /// Serve HTTPS with this PEM certificate chain (reloaded when it changes).
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        #[command(flatten)]
        common: Common,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: cli::UserCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Manage projects and their members.
    Project {
        #[command(subcommand)]
        action: cli::ProjectCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Manage robot accounts.
    Robot {
        #[command(subcommand)]
        action: cli::RobotCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Manage personal access tokens.
    Token {
        #[command(subcommand)]
        action: cli::TokenCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Show the audit log, newest first, one JSON object a line.
    Audit {
        #[command(flatten)]
        args: cli::AuditArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Token-signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        common: Common,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
        #[command(flatten)]
        common: Common,
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
    Print,
}

fn load(common: &Common) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: common.listen.clone(),
        data_dir: common.data_dir.clone(),
        log: common.log_json.then_some(LogOverrides { json: true }),
        tls: (common.tls_self_signed || common.tls_cert.is_some()).then(|| TlsOverrides {
            cert_file: common.tls_cert.clone(),
            key_file: common.tls_key.clone(),
            self_signed: common.tls_self_signed,
        }),
    };
    Config::load(common.config.as_deref(), &overrides)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            action: ConfigAction::Print,
            common,
        } => {
            print!("{}", load(&common)?.to_toml());
            Ok(())
        }
        Command::Serve { common } => {
            let config = load(&common)?;
            let _log_guard = init_logging(&config);
            runtime()?.block_on(berth::server::serve(config))
        }
        Command::User { action, common } => admin(&common, |c| cli::user(c, action)),
        Command::Project { action, common } => admin(&common, |c| cli::project(c, action)),
        Command::Robot { action, common } => admin(&common, |c| cli::robot(c, action)),
        Command::Token { action, common } => admin(&common, |c| cli::token(c, action)),
        Command::Audit { args, common } => admin(&common, |c| cli::audit(c, args)),
        Command::Keys {
            action: KeysAction::Rotate,
            common,
        } => cli::rotate_keys(&load(&common)?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// Runs an administration command against the configured data directory.
fn admin<'a, F, Fut>(common: &Common, run: F) -> anyhow::Result<()>
where
    F: FnOnce(&'a Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
{
    let config: &'a Config = Box::leak(Box::new(load(common)?));
    // Warnings (such as the first admin's generated password) still show.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(run(config))
}
