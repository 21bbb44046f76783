//! `minyi`: runs the cluster (`dev`, `serve`) and carries the operator and agent commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minyi::app::{App, Mode, Service};
use minyi::client::{Connection, PetitionCommand};
use minyi::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "minyi",
    version,
    about = "Minyi: a 12345 citizen-petition platform"
)]
struct Cli {
    /// Configuration file (TOML); `MINYI_*` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole cluster in this process on embedded backends (what `make run` runs).
    Dev {
        /// Replay realistic petitions so the system has something to show.
        #[arg(long)]
        demo: bool,
        /// Print the effective configuration and exit.
        #[arg(long)]
        dump_config: bool,
    },
    /// One service against PostgreSQL, RabbitMQ and Redis.
    Serve {
        #[arg(value_enum)]
        service: Service,
        /// Print the effective configuration and exit.
        #[arg(long)]
        dump_config: bool,
        /// Apply the PostgreSQL migrations and exit (the Kubernetes migration Job). Needs only
        /// `database_url`; safe to run while older replicas serve (migrations only add).
        #[arg(long)]
        migrate_only: bool,
    },
    /// Agent commands: submit, show, list, follow-up.
    Petition {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: PetitionCommand,
    },
    /// The official working-day calendar (holidays and 调休).
    Calendar(minyi_calendar::cli::CalendarArgs),
    /// The responsibility catalog: import, export, validate, diff, versions.
    Catalog(minyi_catalog::cli::CatalogArgs),
    /// The text classifier: eval, cv, train, predict (last stdout line is JSON).
    Classify(minyi_classifier::cli::ClassifyArgs),
    /// Issue a bearer token signed with the configured `jwt_secret` (operators, scripts).
    Token {
        #[arg(long, value_parser = ["agent", "handler", "dispatcher", "arbitrator", "supervisor", "admin"])]
        role: String,
        /// Who the token is for.
        #[arg(long, default_value = "operator")]
        sub: String,
        /// The unit of a handler (e.g. ST-GM for 光明街道).
        #[arg(long)]
        unit: Option<String>,
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Dispatcher commands (派单): queue, show, audit, send, extension, callback, archive.
    Dispatch {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: minyi::dispatcher::DispatchCommand,
    },
    /// Arbitrator commands (快裁): list, show, decide.
    Arbitrate {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: minyi::arbitrate::ArbitrateCommand,
    },
    /// Asks a running Minyi process whether it serves (gRPC health); exit code 0 when it does.
    Health {
        /// Default: `health_addr` when configured, else `grpc_addr` (`https://` when the
        /// process serves TLS), as configured for this process.
        #[arg(long)]
        endpoint: Option<String>,
        /// A service registered with the health service, e.g. `minyi.intake.v1.IntakeService`
        /// (default: the server as a whole).
        #[arg(long, default_value = "")]
        service: String,
        /// PEM CA bundle for an `https://` endpoint.
        #[arg(long, env = "MINYI_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Load generators; results as one JSON line.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// SubmitPetition throughput and latency against a running cluster.
    Intake {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        args: minyi::bench::IntakeBenchArgs,
    },
    /// The SLA timer store on Redis: a million pending timers, firing lateness.
    Timers {
        #[command(flatten)]
        args: minyi::bench_timers::TimerBenchArgs,
    },
    /// Submit → dispatched through the whole running cluster: throughput and latency.
    Pipeline {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        args: minyi::bench::PipelineBenchArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Calendar(args) => offline(minyi_calendar::cli::run(
            &args,
            &mut std::io::stdout().lock(),
        )),
        Command::Catalog(args) => offline(minyi_catalog::cli::run_with(
            &args,
            &mut std::io::stdout().lock(),
            &minyi::catalog_db::DatabaseVersions::open,
        )),
        Command::Classify(args) => offline(minyi_classifier::cli::run(
            &args,
            &mut std::io::stdout().lock(),
        )),
        command => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(cli.config, command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Ends an offline command (calendar, catalog, classify): its one-line error on stderr, exit 2.
fn offline<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The common start of `dev` and `serve`: configuration (or just print it with
/// `--dump-config`), logging, and signal handlers installed before anything is built.
fn start_process(
    config_file: Option<&std::path::Path>,
    dump_config: bool,
    name: &str,
) -> anyhow::Result<
    Option<(
        Config,
        impl std::future::Future<Output = ()> + Send + 'static,
        minyi::telemetry::Telemetry,
    )>,
> {
    let config = Config::load(config_file)?;
    if dump_config {
        print!("{}", config.dump());
        return Ok(None);
    }
    let telemetry =
        minyi::telemetry::init(&config.log_format, config.otlp_endpoint.as_deref(), name);
    let signal = minyi::signal::install()?;
    Ok(Some((config, signal, telemetry)))
}

async fn run(config_file: Option<PathBuf>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev { demo, dump_config } => {
            let Some((mut config, signal, _telemetry)) =
                start_process(config_file.as_deref(), dump_config, "dev")?
            else {
                return Ok(());
            };
            // The demo catalog has no dispatch history: its items are often uncertain where
            // their unit is not.
            config.auto_dispatch_by_unit.get_or_insert(true);
            if demo && config.tls.enabled() {
                anyhow::bail!(
                    "the demo dials the cluster in plaintext: run `minyi dev --demo` without tls.cert_file"
                );
            }
            let data_dir = config.data_dir.clone();
            let app = App::build(config, Mode::Embedded).await?;
            let creds = app.write_dev_credentials()?;
            let scheme = if app.tls() { "https" } else { "http" };
            eprintln!(
                "\nMinyi (embedded) is up.\n  gRPC  {scheme}://{}\n  HTTP  {scheme}://{}\n  data  {}\n  development tokens for every role: {}\n  try:  minyi petition submit --text '小区门口垃圾堆积三天无人清理' --phone 13800138000\n        minyi dispatch queue        (what waits for a dispatcher)\n        {scheme}://{}/dashboard   (sign in with the supervisor token)\n",
                app.grpc_addr(),
                app.http_addr(),
                data_dir.display(),
                creds.display(),
                app.http_addr()
            );
            let (demo_stop, demo_rx) = tokio::sync::watch::channel(false);
            if demo {
                let token = app.token_authority().issue(
                    "demo-agent",
                    minyi_core::auth::Role::Agent,
                    None,
                    chrono::Duration::days(1),
                )?;
                tokio::spawn(minyi::demo::replay(
                    format!("http://{}", app.grpc_addr()),
                    token,
                    app.catalog(),
                    demo_rx.clone(),
                ));
                tokio::spawn(minyi::demo::work(
                    format!("http://{}", app.grpc_addr()),
                    app.token_authority().clone(),
                    demo_rx,
                ));
            }
            let shutdown = async move {
                signal.await;
                let _ = demo_stop.send(true);
            };
            app.run_until(shutdown).await
        }
        Command::Serve {
            service,
            dump_config,
            migrate_only,
        } => {
            let name = format!("{service:?}").to_lowercase();
            let Some((config, signal, _telemetry)) =
                start_process(config_file.as_deref(), dump_config, &name)?
            else {
                return Ok(());
            };
            if migrate_only {
                let applied = minyi::app::migrate(&config).await?;
                println!("database schema is at version {applied}");
                return Ok(());
            }
            let app = App::build(config, Mode::Production(vec![service])).await?;
            app.run_until(signal).await
        }
        Command::Token {
            role,
            sub,
            unit,
            ttl_hours,
        } => {
            let config = Config::load(config_file.as_deref())?;
            let secret = config
                .jwt_secret
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("jwt_secret is not set (MINYI_JWT_SECRET)"))?;
            let role = minyi_core::auth::Role::ALL
                .into_iter()
                .find(|r| r.as_str() == role)
                .ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let authority = minyi_core::auth::TokenAuthority::new(
                secrecy::ExposeSecret::expose_secret(secret).as_bytes(),
            );
            println!(
                "{}",
                authority.issue(
                    &sub,
                    role,
                    unit.as_deref(),
                    chrono::Duration::hours(ttl_hours)
                )?
            );
            Ok(())
        }
        Command::Health {
            endpoint,
            service,
            ca_file,
        } => {
            let endpoint = match endpoint {
                Some(e) => e,
                None => minyi::health::default_endpoint(&Config::load(config_file.as_deref())?),
            };
            let tls = minyi::tls::ClientTls {
                ca_file,
                cert_file: None,
                key_file: None,
            };
            minyi::health::check(&endpoint, &tls, &service).await?;
            println!("{endpoint}: serving");
            Ok(())
        }
        Command::Petition { conn, command } => {
            let out = minyi::client::run(&conn, command).await?;
            println!("{out}");
            Ok(())
        }
        Command::Dispatch { conn, command } => minyi::dispatcher::run(&conn, command).await,
        Command::Arbitrate { conn, command } => {
            let out = minyi::arbitrate::run(&conn, command).await?;
            println!("{out}");
            Ok(())
        }
        Command::Bench { command } => match command {
            BenchCommand::Intake { conn, args } => {
                let r = minyi::bench::run(&conn, &args).await?;
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
            BenchCommand::Timers { args } => {
                let r = minyi::bench_timers::run(&args).await?;
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
            BenchCommand::Pipeline { conn, args } => {
                let r = minyi::bench::pipeline(&conn, &args).await?;
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
        },
        Command::Calendar(_) | Command::Catalog(_) | Command::Classify(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn classify_training_overrides_do_not_collide_with_the_configuration_file() {
        let cli = Cli::try_parse_from([
            "minyi",
            "--config",
            "minyi.toml",
            "classify",
            "cv",
            "--data",
            "train.csv",
            "--train-config",
            r#"{"knn_k":0}"#,
        ])
        .expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("minyi.toml")));
        assert!(matches!(cli.command, Command::Classify(_)));
    }
}
