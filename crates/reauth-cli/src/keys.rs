//! `reauth keys list|stage|rotate`: the server's key file.
//!
//! A rotation gives the key file a new active signing key and keeps the
//! previous one as *retired*: it no longer signs, but still verifies and
//! stays in the JWKS, so access tokens signed before the rotation stay valid
//! until they expire. The refresh-token MAC key and the client-secret pepper
//! never change, so refresh tokens and client secrets survive rotations.
//! Servers read the key file when they start: restart them to use the new
//! key.
//!
//! With several replicas, `stage` first: the new key is published and
//! verifies everywhere (after the file is copied and the replicas
//! restarted) before `rotate` makes it sign.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use reauth_server::ServerKeys;

use crate::duration;

/// The key file to work on.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyFileArgs {
    /// The key file (as for `reauth serve`).
    #[arg(long, env = "REAUTH_KEY_FILE", default_value = "reauth-keys.json")]
    key_file: PathBuf,
}

/// `reauth keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// List the signing keys (active first) and the key fingerprint.
    List {
        #[command(flatten)]
        file: KeyFileArgs,
        /// Print one JSON object.
        #[arg(long, env = "REAUTH_JSON")]
        json: bool,
    },
    /// Phase 1 of a rotation across replicas: add a staged signing key,
    /// published in the JWKS and verifying, that signs nothing until
    /// `rotate`.
    Stage {
        #[command(flatten)]
        file: KeyFileArgs,
    },
    /// Make the staged signing key (or, with none staged, a fresh one)
    /// active; the previous one keeps verifying.
    Rotate {
        #[command(flatten)]
        file: KeyFileArgs,
        /// Drop retired keys that have been retired longer than this. Keep
        /// it above the access-token lifetime (`--access-ttl`).
        #[arg(long, env = "REAUTH_KEEP_RETIRED", default_value = "1d", value_parser = duration::parse)]
        keep_retired: Duration,
    },
}

/// Runs a `keys` subcommand.
pub(crate) fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::List { file, json } => {
            let keys = load(&file)?;
            if json {
                let list: Vec<_> = keys
                    .signing_keys()
                    .into_iter()
                    .map(|k| {
                        serde_json::json!({
                            "kid": k.kid,
                            "created_at": k.created_at,
                            "retired_at": k.retired_at,
                            "active": k.retired_at.is_none() && !k.staged,
                            "staged": k.staged,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"fingerprint": keys.fingerprint(), "signing_keys": list})
                );
            } else {
                println!("fingerprint {}", keys.fingerprint());
                for k in keys.signing_keys() {
                    let state = match k.retired_at {
                        None if k.staged => {
                            "staged (verifies, signs after `keys rotate`)".to_owned()
                        }
                        None => "active".to_owned(),
                        Some(at) => format!("retired {}", crate::user::utc(at * 1000)),
                    };
                    println!("{}\t{state}", k.kid);
                }
            }
        }
        KeysCommand::Stage { file } => {
            let keys = load(&file)?;
            if let Some(kid) = keys.staged_kid() {
                println!("signing key {kid} is staged already; `reauth keys rotate` activates it");
                return Ok(ExitCode::SUCCESS);
            }
            let staged = keys.staged(now()?);
            staged
                .replace_file(&file.key_file)
                .map_err(|e| anyhow::anyhow!("cannot stage a key: {e}"))?;
            let kid = staged.staged_kid().unwrap_or_default();
            tracing::info!(
                target: "reauth::audit",
                event = "signing_key_staged",
                kid,
                "signing key staged"
            );
            println!(
                "signing key {kid} is staged: it is published and verifies, and signs nothing yet"
            );
            println!(
                "copy {} to every replica and restart them; then, once resource servers' JWKS caches have expired, run `reauth keys rotate`",
                file.key_file.display()
            );
        }
        KeysCommand::Rotate { file, keep_retired } => {
            let keys = load(&file)?;
            let was_staged = keys.staged_kid().is_some();
            let rotated = keys.rotated(now()?, keep_retired);
            rotated
                .replace_file(&file.key_file)
                .map_err(|e| anyhow::anyhow!("cannot rotate: {e}"))?;
            let dropped: Vec<String> = keys
                .signing_keys()
                .into_iter()
                .map(|k| k.kid)
                .filter(|kid| !rotated.signing_keys().iter().any(|k| &k.kid == kid))
                .collect();
            tracing::info!(
                target: "reauth::audit",
                event = "signing_key_rotated",
                kid = rotated.kid(),
                retired = keys.kid(),
                dropped = dropped.join(" "),
                "signing key rotated"
            );
            println!(
                "{} signing key {} is active; {} is retired and still verifies",
                if was_staged { "staged" } else { "new" },
                rotated.kid(),
                keys.kid()
            );
            if !was_staged {
                println!(
                    "with several replicas, a replica that has not loaded this file refuses the new key's tokens: use `reauth keys stage` first next time"
                );
            }
            if !dropped.is_empty() {
                println!("dropped retired key(s): {}", dropped.join(", "));
            }
            println!(
                "restart the servers that use {} to sign with it",
                file.key_file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Unix seconds now.
fn now() -> anyhow::Result<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    Ok(i64::try_from(now).unwrap_or(i64::MAX))
}

fn load(file: &KeyFileArgs) -> anyhow::Result<ServerKeys> {
    if !file.key_file.exists() {
        bail!(
            "no key file at {} (`reauth serve` creates it on first start)",
            file.key_file.display()
        );
    }
    ServerKeys::load(&file.key_file).map_err(|e| anyhow::anyhow!("cannot use key file: {e}"))
}
