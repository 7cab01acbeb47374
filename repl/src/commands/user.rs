//! `tidemark user add NAME`: create or update a Flight SQL user in tidemark.toml. The password
//! is asked for twice without echo (or read from stdin with `--password-stdin`) and stored
//! only as an argon2 hash; the rest of the file, comments included, is kept as it was.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (or set an existing user's password, role and grants).
    Add(UserAddArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum RoleArg {
    /// Queries and read-only statements on granted tables and marts.
    Reader,
    /// Also REFRESH MART, OPTIMIZE, VACUUM and other statements that change the warehouse.
    Admin,
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The user's name (letters, digits, '_', '-', '.').
    pub name: String,

    /// Project directory holding tidemark.toml.
    #[arg(long, default_value = ".", env = "TIDEMARK_PROJECT")]
    pub project: std::path::PathBuf,

    #[arg(long, value_enum, default_value_t = RoleArg::Reader)]
    pub role: RoleArg,

    /// A table or mart the user may read, a prefix ending in '*' (daily_*), or '*' for all
    /// (repeatable). Readers need at least one; admins default to '*'.
    #[arg(long = "grant")]
    pub grants: Vec<String>,

    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

fn read_password(args: &UserAddArgs) -> anyhow::Result<String> {
    if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password(format!("Password for {}: ", args.name))?;
    let second = rpassword::prompt_password("Again: ")?;
    if first != second {
        bail!("the passwords differ; nothing was changed");
    }
    Ok(first)
}

pub async fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let UserCommand::Add(args) = args.command;
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        bail!(
            "user name '{}' may hold only letters, digits, '_', '-' and '.'",
            args.name
        );
    }
    let grants = match (args.role, args.grants.is_empty()) {
        (RoleArg::Admin, true) => vec!["*".to_string()],
        (RoleArg::Reader, true) => bail!(
            "give the reader at least one --grant: a table or mart, a prefix like 'daily_*', or '*' for everything"
        ),
        _ => args.grants.clone(),
    };
    let path = args.project.join("tidemark.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run `tidemark init` first or point --project at the project",
            path.display()
        )
    })?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let password = read_password(&args)?;
    if password.chars().count() < 8 {
        bail!("the password is too short: use at least 8 characters");
    }
    let hash = sql::flight::auth::hash_password(&password).map_err(anyhow::Error::msg)?;

    let users = doc
        .entry("users")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_mut()
        .context("`users` in tidemark.toml is not a table")?;
    let existed = users.contains_key(&args.name);
    let mut user = toml_edit::Table::new();
    user["password_hash"] = toml_edit::value(hash);
    user["role"] = toml_edit::value(match args.role {
        RoleArg::Reader => "reader",
        RoleArg::Admin => "admin",
    });
    let mut list = toml_edit::Array::new();
    for grant in &grants {
        list.push(grant.as_str());
    }
    user["grants"] = toml_edit::value(list);
    users.insert(&args.name, toml_edit::Item::Table(user));
    std::fs::write(&path, doc.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{} user '{}' ({:?}, grants {}) in {}; restart `tidemark serve` to apply",
        if existed { "updated" } else { "added" },
        args.name,
        args.role,
        grants.join(", "),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
