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
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
        #[command(flatten)]
        common: Common,
    },
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
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(berth::server::serve(config))
        }
    }
}
