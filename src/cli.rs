//! Command-line arguments, kept apart from the configuration they override.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigFile, FormatName, ReadFrom, SourceConfig};

#[derive(Debug, Parser)]
#[command(
    name = "logwarden",
    version,
    about = "Tails request logs, redacts secrets, indexes every request and answers queries in milliseconds."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args, Default)]
pub struct Common {
    /// Configuration file (default: the embedded default, see logwarden.toml).
    #[arg(long, env = "LOGWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (index and checkpoints).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: tail the configured logs and serve the API.
    Run {
        #[command(flatten)]
        common: Common,
        /// Address of the HTTP API.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Tail files matching this glob instead of the configured sources (repeatable).
        #[arg(long = "tail", value_name = "GLOB")]
        tail: Vec<String>,
        /// Log format of the --tail files.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Where to start in --tail files that have no checkpoint.
        #[arg(long, value_enum)]
        read_from: Option<ReadFromArg>,
        /// Also read lines from standard input.
        #[arg(long)]
        stdin: bool,
        /// `agent` tails logs; `query` tails nothing and answers the API from the ClickHouse
        /// the agents ship to (the [clickhouse] settings).
        #[arg(long, value_enum, default_value = "agent")]
        role: RoleArg,
    },
    /// Validate the configuration and exit.
    CheckConfig {
        #[command(flatten)]
        common: Common,
    },
    /// Start the daemon on a temporary directory fed by a built-in traffic generator.
    Demo {
        /// Address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        /// Generated requests per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
    },
    /// Read files once into the data directory, then exit (backfill).
    Ingest {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check or evaluate the anomaly rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Search the index of the data directory.
    Search {
        #[command(flatten)]
        common: Common,
        /// Start of the time range: RFC 3339, epoch seconds or now-15m.
        #[arg(long)]
        from: Option<String>,
        /// End of the time range (exclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the JSON response instead of one line per hit.
        #[arg(long)]
        json: bool,
        /// Query, e.g. 'status:500 AND route:"/api/users/:id"'.
        #[arg(default_value = "*")]
        query: String,
    },
    /// Follow new matching events through a running daemon's API, oldest first.
    Tail {
        #[command(flatten)]
        common: Common,
        /// The daemon's API (default: http://<api.listen> of the configuration).
        #[arg(long)]
        url: Option<String>,
        /// An API token (default: $LOGWARDEN_API_TOKEN, then <data_dir>/api-token).
        #[arg(long, env = "LOGWARDEN_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Start this far back (like 5m); default: only events from now on.
        #[arg(long)]
        since: Option<String>,
        /// How often to ask for new events.
        #[arg(long, default_value = "1s")]
        interval: humantime::Duration,
        /// Print each event as a JSON line.
        #[arg(long)]
        json: bool,
        /// Query, e.g. 'status:[500 TO 599]'.
        #[arg(default_value = "*")]
        query: String,
    },
    /// List the alerts (pending and firing) and the latest transitions kept in the data
    /// directory.
    Alerts {
        #[command(flatten)]
        common: Common,
        /// Print the saved state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Latency and error statistics per route (or status, method, host) from the data
    /// directory, as `/api/v1/stats` computes them.
    Stats {
        #[command(flatten)]
        common: Common,
        /// Start of the range: RFC 3339, epoch seconds or now-15m (default: 24 hours ago).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        /// route, status, status_class, method, host or none.
        #[arg(long, default_value = "route")]
        group_by: String,
        /// Only the events matching this query.
        #[arg(long, default_value = "*")]
        query: String,
        /// Rows to print, highest count first.
        #[arg(long, default_value_t = 30)]
        limit: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load the rules and run every rule's examples and counter-examples.
    Check {
        /// A directory of extra rule files, added to the built-in pack.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run labelled request cases (JSON Lines) through parsing, redaction and the rules.
    Eval {
        /// Files of cases: method, uri, headers, body, family, expect.
        #[arg(long = "cases", required = true)]
        cases: Vec<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Score at which a case counts as detected.
        #[arg(long, default_value_t = 5)]
        threshold: u32,
        /// Print only the per-case JSON lines, no table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Auto,
    Combined,
    Common,
    Json,
    Logfmt,
    Express,
    Alb,
    W3c,
    Haproxy,
    ErrorLog,
}

impl From<FormatArg> for FormatName {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Auto => FormatName::Auto,
            FormatArg::Combined => FormatName::Combined,
            FormatArg::Common => FormatName::Common,
            FormatArg::Json => FormatName::Json,
            FormatArg::Logfmt => FormatName::Logfmt,
            FormatArg::Express => FormatName::Express,
            FormatArg::Alb => FormatName::Alb,
            FormatArg::W3c => FormatName::W3c,
            FormatArg::Haproxy => FormatName::Haproxy,
            FormatArg::ErrorLog => FormatName::ErrorLog,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Agent,
    Query,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReadFromArg {
    Beginning,
    End,
}

/// Loads the configuration and applies the flags that override it.
pub fn load(common: &Common) -> Result<ConfigFile, crate::config::ConfigError> {
    let mut cfg = ConfigFile::load(common.config.as_deref())?;
    if let Some(d) = &common.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

/// Replaces the configured sources with the `--tail` globs.
pub fn apply_tail(cfg: &mut ConfigFile, tail: &[String], format: Option<FormatArg>, read_from: Option<ReadFromArg>) {
    if !tail.is_empty() {
        cfg.sources = vec![SourceConfig { include: tail.to_vec(), ..SourceConfig::default() }];
    }
    for s in &mut cfg.sources {
        if let Some(f) = format {
            s.format = f.into();
        }
        if let Some(r) = read_from {
            s.read_from = match r {
                ReadFromArg::Beginning => ReadFrom::Beginning,
                ReadFromArg::End => ReadFrom::End,
            };
        }
    }
}
