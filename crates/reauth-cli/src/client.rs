//! `reauth client add|list|remove|rotate-secret`: the server's OAuth
//! clients, straight in its database. A running server (every replica)
//! sees a change at its next request: no restart.
//!
//! These commands need the key file too: client secrets are stored as
//! HMACs under the key file's pepper, and the database refuses a key file
//! other than the one it was set up with.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use reauth_server::{ClientInfo, ClientSpec, GrantType, KeySource, Server, ServerConfig};
use serde_json::json;

use crate::serve;

/// The database and key file to work on.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The database (as for `reauth serve`).
    #[arg(
        long = "db",
        env = "REAUTH_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://reauth.db"
    )]
    database_url: crate::serve::DatabaseUrl,
    /// The key file (as for `reauth serve`; created when absent).
    #[arg(long, env = "REAUTH_KEY_FILE", default_value = "reauth-keys.json")]
    key_file: PathBuf,
}

/// A grant type on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub(crate) enum Grant {
    /// The authorization-code grant with PKCE (needs --redirect-uri).
    AuthorizationCode,
    /// Refreshing tokens.
    RefreshToken,
    /// The resource-owner password grant.
    Password,
    /// Tokens for the client itself (confidential clients only).
    ClientCredentials,
}

impl From<Grant> for GrantType {
    fn from(g: Grant) -> Self {
        match g {
            Grant::AuthorizationCode => Self::AuthorizationCode,
            Grant::RefreshToken => Self::RefreshToken,
            Grant::Password => Self::Password,
            Grant::ClientCredentials => Self::ClientCredentials,
        }
    }
}

/// `reauth client` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClientCommand {
    /// Register a client. A confidential client's secret is printed once.
    Add {
        /// The client id.
        name: String,
        /// A public client (browser or native app): no secret,
        /// token_endpoint_auth_method=none.
        #[arg(long, env = "REAUTH_CLIENT_PUBLIC")]
        public: bool,
        /// A grant type it may use (repeat, or separate with commas).
        /// Default: password and refresh_token, plus authorization_code when
        /// it has a redirect URI. client_credentials only when listed.
        #[arg(
            long = "grant-type",
            value_enum,
            env = "REAUTH_CLIENT_GRANT_TYPES",
            value_delimiter = ','
        )]
        grant_types: Vec<Grant>,
        /// A scope it may ask for (repeat, or separate with spaces or
        /// commas). Without any, it gets no scope and may ask for none.
        #[arg(long = "scope", env = "REAUTH_CLIENT_SCOPES", value_delimiter = ',')]
        scopes: Vec<String>,
        /// The scope granted when it asks for none (default: all its scopes;
        /// "" for none).
        #[arg(long, env = "REAUTH_CLIENT_DEFAULT_SCOPE")]
        default_scope: Option<String>,
        /// A redirect URI of the authorization-code grant (repeat, or
        /// separate with commas): https, loopback http (any port), or a
        /// private-use scheme such as com.example.app:/callback.
        #[arg(
            long = "redirect-uri",
            env = "REAUTH_CLIENT_REDIRECT_URIS",
            value_delimiter = ','
        )]
        redirect_uris: Vec<String>,
        /// A resource server: it may introspect every token, not only its own.
        #[arg(long, env = "REAUTH_CLIENT_INTROSPECTION")]
        introspection: bool,
        /// Print one JSON object (RFC 7591 names).
        #[arg(long, env = "REAUTH_JSON")]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the clients (never their secrets).
    List {
        /// Print one JSON array.
        #[arg(long, env = "REAUTH_JSON")]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a client and revoke every session issued to it.
    Remove {
        /// The client id.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a confidential client a new secret (printed once); the old one
    /// stops working at once.
    RotateSecret {
        /// The client id.
        name: String,
        /// Print one JSON object.
        #[arg(long, env = "REAUTH_JSON")]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Splits `--scope` values on spaces too (`--scope "read write"`).
fn scope_tokens<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn as_json(client: &ClientInfo) -> serde_json::Value {
    json!({
        "client_id": client.client_id,
        "token_endpoint_auth_method": client.token_endpoint_auth_method(),
        "grant_types": client.grant_types,
        "scope": client.scopes.join(" "),
        "default_scope": client.default_scope.join(" "),
        "redirect_uris": client.redirect_uris,
        "introspection": client.introspection,
        "created_at": client.created_at.div_euclid(1000),
    })
}

/// Runs a `client` subcommand.
pub(crate) async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Add {
            name,
            public,
            grant_types,
            scopes,
            default_scope,
            redirect_uris,
            introspection,
            json,
            store,
        } => {
            let mut spec = if public {
                ClientSpec::public(&name)
            } else {
                ClientSpec::confidential(&name)
            };
            spec.grant_types = grant_types.into_iter().map(GrantType::from).collect();
            spec.scopes = scope_tokens(&scopes);
            spec.default_scope = default_scope.as_ref().map(|d| scope_tokens([d]));
            spec.redirect_uris = redirect_uris;
            spec.introspection = introspection;
            let server = open(&store).await?;
            let secret = server
                .register_client(&spec)
                .await
                .with_context(|| format!("cannot add client {name:?}"))?;
            let client = server
                .list_clients()
                .await
                .context("cannot read the client back")?
                .into_iter()
                .find(|c| c.client_id == name)
                .context("the client vanished")?;
            if json {
                let mut out = as_json(&client);
                if let Some(secret) = &secret {
                    out["client_secret"] = secret.expose().into();
                }
                println!("{out}");
            } else {
                print_client(&client);
                if let Some(secret) = &secret {
                    println!("client_secret  {}", secret.expose());
                    println!(
                        "Store the secret now: it is shown only this once (the server keeps a keyed hash)."
                    );
                }
            }
        }
        ClientCommand::List { json, store } => {
            let server = open(&store).await?;
            let clients = server.list_clients().await.context("cannot list clients")?;
            if json {
                let list: Vec<_> = clients.iter().map(as_json).collect();
                println!("{}", serde_json::Value::from(list));
            } else {
                for c in &clients {
                    println!(
                        "{}\t{}\t{}\tscope={}\tcreated {}",
                        c.client_id,
                        if c.public { "public" } else { "confidential" },
                        c.grant_types.join(","),
                        c.scopes.join(" "),
                        crate::user::utc(c.created_at)
                    );
                }
            }
        }
        ClientCommand::Remove { name, store } => {
            let server = open(&store).await?;
            if !server
                .remove_client(&name)
                .await
                .with_context(|| format!("cannot remove client {name:?}"))?
            {
                bail!("no client {name:?}");
            }
            println!("removed client {name:?} and revoked its sessions");
        }
        ClientCommand::RotateSecret { name, json, store } => {
            let server = open(&store).await?;
            let secret = server
                .rotate_client_secret(&name)
                .await
                .with_context(|| format!("cannot rotate the secret of {name:?}"))?;
            if json {
                println!(
                    "{}",
                    json!({"client_id": name, "client_secret": secret.expose()})
                );
            } else {
                println!("client_id      {name}");
                println!("client_secret  {}", secret.expose());
                println!(
                    "The old secret no longer works. Store this one now: it is shown only once."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_client(c: &ClientInfo) {
    println!("client_id      {}", c.client_id);
    println!(
        "type           {} (token_endpoint_auth_method={})",
        if c.public { "public" } else { "confidential" },
        c.token_endpoint_auth_method()
    );
    println!("grant_types    {}", c.grant_types.join(" "));
    println!("scope          {}", c.scopes.join(" "));
    println!("default_scope  {}", c.default_scope.join(" "));
    if !c.redirect_uris.is_empty() {
        println!("redirect_uris  {}", c.redirect_uris.join(" "));
    }
    if c.introspection {
        println!("introspection  any token (resource server)");
    }
}

/// The database with the key file (its pepper MACs client secrets).
async fn open(store: &StoreArgs) -> anyhow::Result<Server> {
    let mut config = ServerConfig::default();
    config.database_url = store.database_url.to_string();
    config.keys = KeySource::File(store.key_file.clone());
    serve::open(config).await
}
