//! The `rollbridge` binary: parses the command line and runs the chosen subcommand.

use std::io::BufRead;

use anyhow::Context as _;
use clap::Parser;
use rollbridge::clock::Clock;
use rollbridge::config::{BindingCommand, Cli, Command, TokenCommand, UserCommand};
use rollbridge::store::Store;

fn main() -> anyhow::Result<()> {
    rollbridge::memory::tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    rollbridge::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let app = rollbridge::startup::App::build(&args, Clock::System).await?;
            app.run_until(rollbridge::startup::shutdown_signal()).await;
        }
        Command::Agent(args) => rollbridge::agent::run(args).await?,
        Command::Binding { command } => binding_command(command).await?,
        Command::Migrate(db) => {
            let store = Store::connect(&db.database_url)
                .await
                .context("connecting to the database")?;
            let report = store.migrate().await.context("migrating")?;
            if report.applied_now.is_empty() {
                println!("schema is up to date");
            }
            for m in &report.all {
                let marker = if report.applied_now.contains(&m.version) {
                    " (applied now)"
                } else {
                    ""
                };
                println!("{:04} {}{marker}", m.version, m.name);
            }
            store.close().await;
        }
        Command::User {
            command:
                UserCommand::Passwd {
                    name,
                    password,
                    database,
                },
        } => {
            // users.username is VARCHAR(100).
            rollbridge::domain::required_name("user name", Some(&name), 100)
                .map_err(anyhow::Error::msg)?;
            let store = open_seeded(&database.database_url).await?;
            let password = match password {
                Some(p) => p,
                None => {
                    eprintln!("new password for {name} (read from stdin):");
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            rollbridge::auth::validate_new_password(&password).map_err(anyhow::Error::msg)?;
            let hash = rollbridge::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
            match store.set_password(&name, &hash, None).await {
                Ok(()) => println!("password of {name} changed"),
                Err(rollbridge::store::StoreError::NotFound) => {
                    store
                        .create_user(
                            &name,
                            &hash,
                            rollbridge::domain::seed::DEFAULT_TEAM_ID,
                            chrono::Utc::now().timestamp_millis(),
                        )
                        .await?;
                    println!("user {name} created");
                }
                Err(e) => return Err(e.into()),
            }
            store.close().await;
        }
        Command::Token { command } => token(command).await?,
        Command::Healthcheck { url } => {
            let ok = healthcheck(&url).await;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
    Ok(())
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            user,
            database,
        } => {
            // api_tokens.name is VARCHAR(255).
            rollbridge::domain::required_name("token name", Some(&name), 255)
                .map_err(anyhow::Error::msg)?;
            let store = open_seeded(&database.database_url).await?;
            let owner = store
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user named {user}"))?;
            let (token, digest) = rollbridge::auth::new_token();
            let created = store
                .create_token(
                    &name,
                    &owner.user.id,
                    &digest,
                    chrono::Utc::now().timestamp_millis(),
                )
                .await?;
            println!(
                "created token {} ({}) for {}; it is shown only once:",
                created.id, created.name, user
            );
            println!("{token}");
            store.close().await;
        }
        TokenCommand::List { database } => {
            let store = Store::open(&database.database_url)
                .await
                .context("opening the database")?;
            for t in store.list_tokens().await? {
                let used = t
                    .last_used_ts
                    .map(rollbridge::domain::format_ts)
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}\tcreated {}\tlast used {}",
                    t.id,
                    t.name,
                    rollbridge::domain::format_ts(t.created_ts),
                    used
                );
            }
            store.close().await;
        }
        TokenCommand::Revoke { id, database } => {
            let store = Store::open(&database.database_url)
                .await
                .context("opening the database")?;
            store
                .revoke_token(&id)
                .await
                .with_context(|| format!("revoking token {id}"))?;
            println!("token {id} revoked");
            store.close().await;
        }
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET over a plain TCP socket, so the container image needs no curl.
async fn healthcheck(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let connect = tokio::net::TcpStream::connect(host);
    let Ok(Ok(mut stream)) = tokio::time::timeout(std::time::Duration::from_secs(5), connect).await
    else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_exact(&mut head)
        )
        .await,
        Ok(Ok(_))
    ) && head.starts_with(b"HTTP/1.1 200")
}

async fn binding_command(command: BindingCommand) -> anyhow::Result<()> {
    match command {
        BindingCommand::List { database } => {
            let store = Store::open(&database.database_url)
                .await
                .context("opening the database")?;
            for b in store.all_bindings().await? {
                println!(
                    "{}\t{}\t{}\tapp={}\tchannel={}\tfilter={:?}\tprerelease={}\tsecret={}",
                    b.id,
                    b.kind.as_str(),
                    b.match_value,
                    b.application_id,
                    b.channel_id.as_deref().unwrap_or("-"),
                    b.tag_filter,
                    b.allow_prerelease,
                    if b.has_secret { "yes" } else { "no" }
                );
            }
            store.close().await;
        }
        BindingCommand::Create {
            app,
            kind,
            match_value,
            channel,
            tag_filter,
            allow_prerelease,
            secret,
            database,
        } => {
            let store = open_seeded(&database.database_url).await?;
            let application = store
                .app_by_id_or_name(&app)
                .await?
                .with_context(|| format!("no application {app:?}"))?;
            let channel_id = match channel {
                Some(wanted) => Some(
                    store
                        .list_channels(&application.id)
                        .await?
                        .into_iter()
                        .find(|c| c.id == wanted || c.name == wanted)
                        .map(|c| c.id)
                        .with_context(|| {
                            format!("no channel {wanted:?} in {}", application.name)
                        })?,
                ),
                None => None,
            };
            let input = rollbridge::domain::BindingInput {
                kind: Some(kind),
                match_value: Some(match_value),
                channel_id,
                tag_filter: Some(tag_filter),
                allow_prerelease: Some(allow_prerelease),
                secret,
                ..Default::default()
            };
            let fields = input.validate(None).map_err(anyhow::Error::msg)?;
            let binding = store
                .create_binding(
                    &application.id,
                    &fields,
                    chrono::Utc::now().timestamp_millis(),
                )
                .await?;
            println!("{}", binding.id);
            store.close().await;
        }
        BindingCommand::Delete { id, database } => {
            let store = Store::open(&database.database_url)
                .await
                .context("opening the database")?;
            let binding = store
                .all_bindings()
                .await?
                .into_iter()
                .find(|b| b.id == id)
                .with_context(|| format!("no binding {id}"))?;
            store
                .delete_binding(&binding.application_id, &binding.id)
                .await?;
            println!("binding {id} deleted");
            store.close().await;
        }
    }
    Ok(())
}

/// Opens (and migrates) the database and makes sure first-start data exists (the `admin` user,
/// the CoreOS application), so CLI commands work before the first `serve`.
async fn open_seeded(url: &str) -> anyhow::Result<Store> {
    let store = Store::open(url).await.context("opening the database")?;
    rollbridge::startup::seed(&store, None, chrono::Utc::now().timestamp_millis()).await?;
    Ok(store)
}
