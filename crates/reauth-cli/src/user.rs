//! `reauth user add|remove|list`: the server's users, straight in its database.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use reauth_server::{Server, ServerConfig};

use crate::serve;

/// The database to work on.
#[derive(Debug, clap::Args)]
pub(crate) struct DbArgs {
    /// The database: `sqlite://FILE` or `postgres://…` (as for `reauth serve`).
    #[arg(
        long = "db",
        env = "REAUTH_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://reauth.db"
    )]
    database_url: crate::serve::DatabaseUrl,
}

/// `reauth user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user (password from a prompt, or from stdin with `--password-stdin`).
    Add {
        /// The username.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long, env = "REAUTH_PASSWORD_STDIN")]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a user and revoke their sessions.
    Remove {
        /// The username.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Runs a `user` subcommand.
pub(crate) async fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            db,
        } => {
            let password = read_password(&name, password_stdin)?;
            let server = open(&db).await?;
            server
                .add_user(&name, &password)
                .await
                .with_context(|| format!("cannot add user {name:?}"))?;
            println!("added user {name:?}");
        }
        UserCommand::Remove { name, db } => {
            let server = open(&db).await?;
            if !server
                .remove_user(&name)
                .await
                .with_context(|| format!("cannot remove user {name:?}"))?
            {
                bail!("no user {name:?}");
            }
            println!("removed user {name:?} and revoked their sessions");
        }
        UserCommand::List { db } => {
            let server = open(&db).await?;
            for user in server.list_users().await.context("cannot list users")? {
                println!("{}\tcreated {}", user.username, utc(user.created_at));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the database only. Users need no keys: throwaway (`Ephemeral`)
/// keys are neither stored nor checked against the database's.
async fn open(db: &DbArgs) -> anyhow::Result<Server> {
    let mut config = ServerConfig::default();
    config.database_url = db.database_url.to_string();
    serve::open(config).await
}

fn read_password(name: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("no terminal to prompt for the password: pass it with --password-stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for milliseconds since the Unix epoch.
pub(crate) fn utc(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
    }
}
