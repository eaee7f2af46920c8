//! Administration commands: the `/api/v1` operations on the local data
//! directory, run as a system administrator (whoever can read the data
//! directory already holds every secret in it). A running server picks the
//! changes up at once: it checks the store's access generation before
//! trusting anything it cached.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::Subcommand;

use berth::auth::{Actor, UserUpdate};
use berth::auth::{Auth, Principal};
use berth::config::Config;
use berth::metadata::{Action, AuditFilter, Role};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        name: String,
        /// Make the account a system administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Set an account's password from standard input.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Grant or revoke system administration, or disable/enable an account.
    Set {
        name: String,
        #[arg(long)]
        admin: Option<bool>,
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Delete an account.
    Del { name: String },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project (private unless --public).
    Add {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// List projects.
    List,
    /// Make a project public (anonymous pull) or private.
    Visibility {
        name: String,
        visibility: Visibility,
    },
    /// Delete a project with its members and robot accounts; refused while
    /// it holds repositories, unless --force (which deletes them too).
    Del {
        name: String,
        /// Also delete the project's repositories (tags, manifests; the
        /// blob bytes are left to garbage collection).
        #[arg(long)]
        force: bool,
    },
    /// Members and roles of a project.
    Members { name: String },
    /// Add a member or change a role: guest, developer, maintainer, admin.
    Member {
        name: String,
        user: String,
        role: Role,
    },
    /// Remove a member.
    Unmember { name: String, user: String },
    /// Show the project's policy (quotas, immutable tags, untagged
    /// manifests, retention) and usage as JSON; --set FILE (or -) replaces it.
    Policy {
        name: String,
        #[arg(long, value_name = "FILE")]
        set: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Visibility {
    /// Anyone may pull, even without signing in.
    Public,
    /// Only members (and system administrators) may pull.
    Private,
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// Create robot$PROJECT+NAME; prints its secret once.
    Add {
        project: String,
        name: String,
        /// Comma-separated: pull, push, delete.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<Action>,
        /// Expire after this many days.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List a project's robot accounts.
    List { project: String },
    /// Revoke a robot account.
    Del { project: String, robot: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token for USER; prints it once.
    Add {
        user: String,
        name: String,
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List a user's personal access tokens (not the tokens themselves).
    List { user: String },
    /// Revoke a personal access token by its id.
    Del { user: String, id: String },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    repository: Option<String>,
    /// Only events with an id below this (paging).
    #[arg(long)]
    before: Option<i64>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// Whether a command only reads the data directory or may change it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A command that only reads must not create a data directory (and an
/// admin with it) where there was none, as in a wrong working directory.
pub fn check_data_dir(config: &Config, access: Access) -> anyhow::Result<()> {
    let database = config.data_dir.join("metadata.db");
    if access == Access::Write || config.shared_metadata() || database.is_file() {
        return Ok(());
    }
    let shown = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    bail!(
        "no berth data directory at {} (it has no metadata.db): pass --data-dir or set BERTH_DATA_DIR",
        shown.display()
    )
}

/// Opens the authentication service of the data directory.
async fn open(config: &Config) -> anyhow::Result<Auth> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let metadata = berth::server::open_metadata(config).await?;
    Ok(Auth::open(metadata, &config.auth, &config.data_dir).await?)
}

fn admin() -> Actor {
    Actor {
        principal: Principal::User {
            name: "cli".into(),
            admin: true,
        },
        source: None,
    }
}

fn as_user(name: &str) -> Actor {
    Actor {
        principal: Principal::User {
            name: name.into(),
            admin: false,
        },
        source: None,
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

fn days_from_now(days: Option<u32>) -> Option<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    days.map(|d| now + i64::from(d) * 86_400_000)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn user(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let auth = open(config).await?;
    let a = admin();
    match cmd {
        UserCommand::Add { name, admin, .. } => {
            let password = read_password()?;
            print_json(
                &auth
                    .accounts
                    .create_user(&a, &name, &password, admin)
                    .await?,
            )?;
        }
        UserCommand::List => print_json(&auth.accounts.list_users(&a).await?)?,
        UserCommand::Passwd { name, .. } => {
            let update = UserUpdate {
                password: Some(read_password()?),
                ..UserUpdate::default()
            };
            auth.accounts.update_user(&a, &name, &update).await?;
            println!("password of {name} changed");
        }
        UserCommand::Set {
            name,
            admin,
            disabled,
        } => {
            let update = UserUpdate {
                password: None,
                admin,
                disabled,
            };
            print_json(&auth.accounts.update_user(&a, &name, &update).await?)?;
        }
        UserCommand::Del { name } => {
            auth.accounts.delete_user(&a, &name).await?;
            println!("deleted {name}");
        }
    }
    auth.audit().flush().await;
    Ok(())
}

pub async fn project(config: &Config, cmd: ProjectCommand) -> anyhow::Result<()> {
    let auth = open(config).await?;
    let a = admin();
    match cmd {
        // The operator has no account to become the project's admin.
        ProjectCommand::Add { name, public } => print_json(
            &auth
                .accounts
                .create_unowned_project(&a, &name, public)
                .await?,
        )?,
        ProjectCommand::List => print_json(&auth.accounts.list_projects(&a).await?)?,
        ProjectCommand::Visibility { name, visibility } => {
            let public = visibility == Visibility::Public;
            auth.accounts.set_project_public(&a, &name, public).await?;
            println!(
                "{name} is now {}",
                if public { "public" } else { "private" }
            );
        }
        ProjectCommand::Del { name, force } => {
            let repositories = auth.accounts.delete_project(&a, &name, force).await?;
            let noun = if repositories == 1 {
                "repository"
            } else {
                "repositories"
            };
            println!("deleted {name} and {repositories} {noun}");
        }
        ProjectCommand::Members { name } => {
            for m in auth.accounts.members(&a, &name).await? {
                println!("{}\t{}", m.user, m.role);
            }
        }
        ProjectCommand::Member { name, user, role } => {
            auth.accounts.set_member(&a, &name, &user, role).await?;
            println!("{user} is {role} of {name}");
        }
        ProjectCommand::Unmember { name, user } => {
            auth.accounts.remove_member(&a, &name, &user).await?;
            println!("{user} removed from {name}");
        }
        ProjectCommand::Policy { name, set } => {
            crate::cli_lifecycle::policy(config, &name, set.as_deref()).await?;
            if set.is_some() {
                auth.accounts
                    .audit_lifecycle(&a, "project.policy", format!("{name} (cli)"));
            }
        }
    }
    auth.audit().flush().await;
    Ok(())
}

pub async fn robot(config: &Config, cmd: RobotCommand) -> anyhow::Result<()> {
    let auth = open(config).await?;
    let a = admin();
    match cmd {
        RobotCommand::Add {
            project,
            name,
            actions,
            expires_days,
        } => {
            let created = auth
                .accounts
                .create_robot(&a, &project, &name, actions, days_from_now(expires_days))
                .await?;
            print_json(&created)?;
            eprintln!("the secret is shown only now: store it");
        }
        RobotCommand::List { project } => {
            print_json(&auth.accounts.list_robots(&a, &project).await?)?
        }
        RobotCommand::Del { project, robot } => {
            auth.accounts.delete_robot(&a, &project, &robot).await?;
            println!("revoked {robot}");
        }
    }
    auth.audit().flush().await;
    Ok(())
}

pub async fn token(config: &Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let auth = open(config).await?;
    match cmd {
        TokenCommand::Add {
            user,
            name,
            expires_days,
        } => {
            let created = auth
                .accounts
                .create_token(&as_user(&user), &name, days_from_now(expires_days))
                .await?;
            print_json(&created)?;
            eprintln!("the token is shown only now: store it");
        }
        TokenCommand::List { user } => {
            print_json(&auth.accounts.list_tokens(&as_user(&user)).await?)?
        }
        TokenCommand::Del { user, id } => {
            auth.accounts.delete_token(&as_user(&user), &id).await?;
            println!("revoked token {id}");
        }
    }
    auth.audit().flush().await;
    Ok(())
}

pub async fn audit(config: &Config, args: AuditArgs) -> anyhow::Result<()> {
    let auth = open(config).await?;
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        repository: args.repository,
        before_id: args.before,
        limit: args.limit,
        ..AuditFilter::default()
    };
    for e in auth.accounts.audit_log(&admin(), &filter).await? {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

/// Adds a new token-signing key; tokens signed with older keys stay valid.
/// Replicas sharing PostgreSQL get it at once and sign with it once every
/// one of them verifies it; one berth alone signs with it when restarted.
pub async fn rotate_keys(config: &Config) -> anyhow::Result<()> {
    let kid = berth::auth::TokenKeys::rotate(&config.data_dir.join("keys"))?;
    if berth::server::share_keys(config).await? {
        let settle = berth::server::KEY_SETTLE.as_secs();
        println!(
            "new signing key {kid}, stored for the other replicas: running replicas sign \
             with it in about {settle} s"
        );
    } else {
        println!("new signing key {kid}; restart berth to sign with it");
    }
    Ok(())
}
