//! `minyi catalog …`: the operator's command line for the catalog.
//!
//! ```text
//! minyi catalog import FILE [STORE] [--activate] [--units UNITS]
//! minyi catalog export [--version V] [--format csv|json|yaml] [--out FILE] [STORE]
//! minyi catalog validate FILE [--units UNITS]
//! minyi catalog diff A B [STORE]          (A, B: files or stored versions)
//! minyi catalog demo --out FILE [--format csv|json|yaml]
//! minyi catalog history --out FILE [--per-item N] [--seed S]
//! minyi catalog list [STORE]
//! minyi catalog activate VERSION [STORE]
//! ```
//!
//! STORE is where versions are kept ([`StoreArgs`]): `--dir DIR` (`MINYI_CATALOG_DIR`), a
//! catalog directory as embedded mode keeps it; else `--database-url URL`
//! (`MINYI_DATABASE_URL`), the production database every service reads; else
//! [`DEFAULT_DIR`], where `minyi dev` (`make run`) and a service with the default data
//! directory keep it.
//!
//! CSV files carry no unit directory: `--units` (JSON/YAML list or CSV `code,name,kind,parent`)
//! supplies one, else the built-in 光明区 directory is used.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::demo::demo_history;
use crate::diff::diff;
use crate::error::CatalogError;
use crate::format::{self, Format, ReadOptions};
use crate::model::{Catalog, UnitDirectory};
use crate::store::CatalogDir;

/// The catalog directory when neither `--dir` nor a database is given: the one of the
/// services' default data directory (`data/dev`), which `make run` uses.
pub const DEFAULT_DIR: &str = "data/dev/catalog";

/// Files above this size get a progress bar on import.
const PROGRESS_THRESHOLD: u64 = 512 * 1024;

/// Where stored versions are: a directory, or the production database.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Catalog directory [default: data/dev/catalog, as `make run` keeps it, unless a
    /// database URL is given].
    #[arg(long, env = "MINYI_CATALOG_DIR")]
    pub dir: Option<PathBuf>,
    /// The services' PostgreSQL database (production); a given --dir wins.
    #[arg(long, env = "MINYI_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Stored catalog versions as the command line uses them. [`CatalogDir`] is one; the `minyi`
/// binary, which has the database driver, supplies the database through [`run_with`].
pub trait Versions {
    /// For messages: `data/dev/catalog`, `the catalog database`.
    fn describe(&self) -> String;
    /// Stored versions, oldest first.
    fn list_versions(&self) -> Result<Vec<String>, CatalogError>;
    /// Validates and stores a new version; returns its label.
    fn import(&self, catalog: &Catalog) -> Result<String, CatalogError>;
    /// Makes a stored version the active one.
    fn activate(&self, version: &str) -> Result<(), CatalogError>;
    /// The active version's label, if any.
    fn active_version(&self) -> Result<Option<String>, CatalogError>;
    /// A stored version, validated.
    fn load(&self, version: &str) -> Result<Catalog, CatalogError>;
    /// The active catalog.
    fn active(&self) -> Result<Catalog, CatalogError>;
    /// A stored version's item count and content hash; by default by loading it.
    fn summary(&self, version: &str) -> Result<(usize, String), CatalogError> {
        let c = self.load(version)?;
        Ok((c.len(), c.content_hash()))
    }
}

impl Versions for CatalogDir {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
    fn list_versions(&self) -> Result<Vec<String>, CatalogError> {
        CatalogDir::list_versions(self)
    }
    fn import(&self, catalog: &Catalog) -> Result<String, CatalogError> {
        CatalogDir::import(self, catalog)
    }
    fn activate(&self, version: &str) -> Result<(), CatalogError> {
        CatalogDir::activate(self, version)
    }
    fn active_version(&self) -> Result<Option<String>, CatalogError> {
        CatalogDir::active_version(self)
    }
    fn load(&self, version: &str) -> Result<Catalog, CatalogError> {
        CatalogDir::load(self, version)
    }
    fn active(&self) -> Result<Catalog, CatalogError> {
        CatalogDir::active(self)
    }
}

/// Opens the database named by a URL as [`Versions`].
pub type OpenDatabase<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Versions>, CatalogError>;

impl StoreArgs {
    fn open(&self, open_database: OpenDatabase<'_>) -> Result<Box<dyn Versions>, CatalogError> {
        match (&self.dir, &self.database_url) {
            (None, Some(url)) => open_database(url),
            (dir, _) => Ok(Box::new(CatalogDir::open(
                dir.as_deref().unwrap_or(Path::new(DEFAULT_DIR)),
            )?)),
        }
    }
}

/// Arguments of `minyi catalog`.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// Subcommands of `minyi catalog`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CatalogCommand {
    /// Validate a catalog file and store it as a new version.
    Import {
        /// Catalog file (.csv, .json, .yaml).
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Make the new version active.
        #[arg(long)]
        activate: bool,
        /// Unit directory for CSV files (default: built-in 光明区 directory).
        #[arg(long)]
        units: Option<PathBuf>,
    },
    /// Write a stored version (default: the active one) to a file or stdout.
    Export {
        /// Version to export (`v3` or `3`).
        #[arg(long = "version")]
        version: Option<String>,
        /// Output format (default: from --out's extension, else json).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a catalog file and print every problem as `line N: field: message`.
    Validate {
        /// Catalog file (.csv, .json, .yaml).
        file: PathBuf,
        /// Unit directory for CSV files (default: built-in 光明区 directory).
        #[arg(long)]
        units: Option<PathBuf>,
    },
    /// Show what changed from A to B (each a file or a stored version).
    Diff {
        /// Old catalog: file or version.
        a: String,
        /// New catalog: file or version.
        b: String,
        /// Where versions are.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the generated demo catalog (3,469 items).
    Demo {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Output format (default: from --out's extension, else json).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Write a synthetic petition history over the demo catalog as CSV `text,item_code`.
    History {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Texts per item.
        #[arg(long, default_value_t = 5)]
        per_item: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List stored versions.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a stored version the active one. Running classification services pick it up
    /// within `catalog_poll_secs` (a new model is trained; no restart).
    Activate {
        /// Version to activate (`v3` or `3`).
        version: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs a `minyi catalog` command, writing its report to `out`. A failed `validate` prints its
/// problems to `out` and then returns [`CatalogError::Invalid`].
pub fn run(args: &CatalogArgs, out: &mut dyn Write) -> Result<(), CatalogError> {
    run_with(args, out, &|_| {
        Err(CatalogError::Backend(
            "this program cannot open a catalog database; use --dir".into(),
        ))
    })
}

/// [`run`], opening `--database-url` with `open_database`.
pub fn run_with(
    args: &CatalogArgs,
    out: &mut dyn Write,
    open_database: OpenDatabase<'_>,
) -> Result<(), CatalogError> {
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|e| CatalogError::io("<output>", e))
    };
    match &args.command {
        CatalogCommand::Import {
            file,
            store,
            activate,
            units,
        } => {
            let units = load_units(units.as_deref())?;
            let catalog = read_file(file, &units, true)?;
            let store = store.open(open_database)?;
            let version = store.import(&catalog)?;
            if *activate {
                store.activate(&version)?;
            }
            w(
                out,
                format!(
                    "imported {} as {version} ({} items, sha256 {}){}",
                    file.display(),
                    catalog.len(),
                    short_hash(&catalog),
                    if *activate { ", active" } else { "" }
                ),
            )
        }
        CatalogCommand::Export {
            version,
            format,
            out: dest,
            store,
        } => {
            let store = store.open(open_database)?;
            let catalog = match version {
                Some(v) => store.load(v)?,
                None => store.active()?,
            };
            let fmt = pick_format(*format, dest.as_deref());
            match dest {
                Some(path) => {
                    write_file(path, &catalog, fmt)?;
                    w(
                        out,
                        format!(
                            "exported {} ({} items) to {}",
                            catalog.version,
                            catalog.len(),
                            path.display()
                        ),
                    )
                }
                None => out
                    .write_all(format::write(&catalog, fmt)?.as_bytes())
                    .map_err(|e| CatalogError::io("<output>", e)),
            }
        }
        CatalogCommand::Validate { file, units } => {
            let units = load_units(units.as_deref())?;
            match read_file(file, &units, false) {
                Ok(c) => w(
                    out,
                    format!(
                        "ok: {} items, {} units, sha256 {}",
                        c.len(),
                        c.units().len(),
                        short_hash(&c)
                    ),
                ),
                Err(CatalogError::Invalid { problems }) => {
                    for p in &problems {
                        w(out, p.to_string())?;
                    }
                    Err(CatalogError::Invalid { problems })
                }
                Err(e) => Err(e),
            }
        }
        CatalogCommand::Diff { a, b, store } => {
            let units = UnitDirectory::guangming();
            let old = file_or_version(a, store, open_database, &units)?;
            let new = file_or_version(b, store, open_database, &units)?;
            write!(out, "{}", diff(&old, &new)).map_err(|e| CatalogError::io("<output>", e))
        }
        CatalogCommand::Demo { out: dest, format } => {
            let catalog = Catalog::demo();
            write_file(dest, &catalog, pick_format(*format, Some(dest)))?;
            w(
                out,
                format!(
                    "wrote demo catalog {} ({} items) to {}",
                    catalog.version,
                    catalog.len(),
                    dest.display()
                ),
            )
        }
        CatalogCommand::History {
            out: dest,
            per_item,
            seed,
        } => {
            let catalog = Catalog::demo();
            let rows = demo_history(&catalog, *per_item, *seed);
            let mut wtr = csv::Writer::from_writer(Vec::new());
            let mut put = |rec: [&str; 2]| {
                wtr.write_record(rec)
                    .map_err(|e| CatalogError::parse("csv", e))
            };
            put(["text", "item_code"])?;
            for (text, code) in &rows {
                put([text, code])?;
            }
            let bytes = wtr
                .into_inner()
                .map_err(|e| CatalogError::parse("csv", e.error()))?;
            fs::write(dest, bytes).map_err(|e| CatalogError::io(dest, e))?;
            w(
                out,
                format!("wrote {} texts to {}", rows.len(), dest.display()),
            )
        }
        CatalogCommand::Activate { version, store } => {
            let store = store.open(open_database)?;
            // Load first: a version that does not validate is never made active.
            let catalog = store.load(version)?;
            store.activate(version)?;
            w(
                out,
                format!(
                    "{} is active ({} items); running services switch to it without a restart",
                    catalog.version,
                    catalog.len()
                ),
            )
        }
        CatalogCommand::List { store } => {
            let store = store.open(open_database)?;
            let active = store.active_version()?;
            let versions = store.list_versions()?;
            if versions.is_empty() {
                return w(out, format!("no versions in {}", store.describe()));
            }
            for v in versions {
                let mark = if active.as_deref() == Some(v.as_str()) {
                    "*"
                } else {
                    " "
                };
                let line = match store.summary(&v) {
                    Ok((items, sha256)) => format!(
                        "{mark} {v:<5} {items:>5} items  sha256 {}",
                        &sha256[..sha256.len().min(12)]
                    ),
                    Err(e) => format!("{mark} {v:<5} unreadable: {e}"),
                };
                w(out, line)?;
            }
            Ok(())
        }
    }
}

fn short_hash(c: &Catalog) -> String {
    c.content_hash().chars().take(12).collect()
}

fn pick_format(explicit: Option<Format>, path: Option<&Path>) -> Format {
    explicit
        .or_else(|| path.and_then(Format::from_path))
        .unwrap_or(Format::Json)
}

/// A text file's content, without a byte-order mark: UTF-8, else GB18030 — which
/// includes GBK, the encoding Excel on a Chinese Windows saves "CSV" in — said on stderr; a
/// file that is neither, or UTF-8 with bad bytes in it, is refused, naming the line of the
/// first byte that is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, CatalogError> {
    let bytes = fs::read(path).map_err(|e| CatalogError::io(path, e))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }),
        Err(e) => {
            let bytes = e.into_bytes();
            // A UTF-8 file with a stray byte can decode as GB18030 too, into nonsense: read as
            // UTF-8, it has more good Chinese characters than bad bytes, a GBK file far fewer.
            let lossy = String::from_utf8_lossy(&bytes);
            let chinese = lossy
                .chars()
                .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
                .count();
            let bad = lossy.chars().filter(|&c| c == '\u{fffd}').count();
            let gbk = (chinese < bad)
                .then(|| {
                    encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(&bytes)
                })
                .flatten();
            if let Some(text) = gbk {
                eprintln!(
                    "note: {} is not UTF-8; read as GB18030 (GBK), as Excel saves CSV on a \
                     Chinese Windows",
                    path.display()
                );
                return Ok(text.into_owned());
            }
            let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |s| s.len());
            let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(CatalogError::parse(
                path.display().to_string(),
                format!(
                    "line {line}: neither UTF-8 nor GB18030 (GBK) text; save the file as \
                     UTF-8 (Excel: \"CSV UTF-8\")"
                ),
            ))
        }
    }
}

/// Writes `catalog` to the file `path`. A CSV file starts with a byte-order mark, so that
/// Excel opens it as UTF-8 (without one, a Chinese Windows reads it as GBK); [`read_text`]
/// skips it on import.
fn write_file(path: &Path, catalog: &Catalog, fmt: Format) -> Result<(), CatalogError> {
    let mut text = format::write(catalog, fmt)?;
    if fmt == Format::Csv {
        text.insert(0, '\u{feff}');
    }
    fs::write(path, text).map_err(|e| CatalogError::io(path, e))
}

fn load_units(path: Option<&Path>) -> Result<UnitDirectory, CatalogError> {
    match path {
        None => Ok(UnitDirectory::guangming()),
        Some(p) => {
            let text = read_text(p)?;
            let fmt = Format::from_path(p).unwrap_or(Format::Json);
            format::read_units(&text, fmt)
        }
    }
}

fn read_file(path: &Path, units: &UnitDirectory, progress: bool) -> Result<Catalog, CatalogError> {
    let fmt = Format::from_path(path).ok_or_else(|| {
        CatalogError::Format(
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_string(),
        )
    })?;
    let text = read_text(path)?;
    let version = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("imported")
        .to_string();
    let opts = ReadOptions {
        units,
        version: &version,
    };
    let len = text.len() as u64;
    let bar = (progress && len >= PROGRESS_THRESHOLD).then(|| {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("reading {}", path.display()));
        bar
    });
    let result = match &bar {
        Some(bar) => {
            let mut tick = |done: u64| bar.set_position(done);
            format::read(&text, fmt, &opts, Some(&mut tick))
        }
        None => format::read(&text, fmt, &opts, None),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result.map_err(|e| match e {
        CatalogError::Parse { message, .. } => CatalogError::Parse {
            what: path.display().to_string(),
            message,
        },
        other => other,
    })
}

fn file_or_version(
    spec: &str,
    store: &StoreArgs,
    open_database: OpenDatabase<'_>,
    units: &UnitDirectory,
) -> Result<Catalog, CatalogError> {
    let p = Path::new(spec);
    if p.is_file() {
        read_file(p, units, false)
    } else {
        store.open(open_database)?.load(spec)
    }
}
