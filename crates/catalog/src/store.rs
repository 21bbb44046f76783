//! A versioned catalog directory of plain files.
//!
//! Layout: `v1.json`, `v2.json`, … (the JSON form of each version, never rewritten) and
//! `active`, a one-line file naming the active version. Every file is written to a temporary
//! name in the same directory and then moved into place, so readers see either the old or the
//! new file, never half of one. Version files are linked into place without replacing, so two
//! concurrent imports get different numbers instead of overwriting each other.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::format::{self, Format, ReadOptions};
use crate::model::{Catalog, CatalogItem, Responsibility, UnitDirectory};

const ACTIVE: &str = "active";

/// Arbitration rulings recorded as training data (one JSON object per line: `text`, `label`
/// = item code, …), inside the catalog directory: written by the arbitration service, read by
/// classification when it retrains.
pub const RULINGS_FILE: &str = "rulings.jsonl";

/// A clarification of the catalog from an arbitration ruling (快裁).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clarification {
    /// Reference of the ruling, recorded in the item's notes (e.g. `KC-2025-0114`).
    pub ruling: String,
    /// What the ruling decided.
    pub change: ClarificationChange,
}

/// The substance of a clarification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClarificationChange {
    /// An existing item gets a new owner (and optionally new co-handlers) and a note.
    Reassign {
        /// Item code.
        item: String,
        /// The new owner.
        responsibility: Responsibility,
        /// New co-handling units; `None` keeps the current ones.
        co_units: Option<Vec<String>>,
        /// Why, in the arbitrator's words.
        note: String,
    },
    /// An existing item gets a note only (e.g. a boundary between two items).
    Note {
        /// Item code.
        item: String,
        /// The clarification.
        note: String,
    },
    /// A matter type the catalog did not have.
    NewItem {
        /// The new item; its code must be new.
        item: Box<CatalogItem>,
    },
}

impl Catalog {
    /// Applies a clarification in memory and validates the result.
    pub fn apply(&mut self, c: &Clarification) -> Result<(), CatalogError> {
        let stamp = |note: &str| format!("[{}] {}", c.ruling, note);
        match &c.change {
            ClarificationChange::Reassign {
                item,
                responsibility,
                co_units,
                note,
            } => {
                let mut it = self
                    .get(item)
                    .cloned()
                    .ok_or_else(|| CatalogError::UnknownItem(item.clone()))?;
                it.responsibility = responsibility.clone();
                if let Some(co) = co_units {
                    it.co_units = co.clone();
                }
                it.notes.push(stamp(note));
                self.upsert(it);
            }
            ClarificationChange::Note { item, note } => {
                let mut it = self
                    .get(item)
                    .cloned()
                    .ok_or_else(|| CatalogError::UnknownItem(item.clone()))?;
                it.notes.push(stamp(note));
                self.upsert(it);
            }
            ClarificationChange::NewItem { item } => {
                if self.get(&item.code).is_some() {
                    return Err(CatalogError::DuplicateItem(item.code.clone()));
                }
                let mut it = (**item).clone();
                it.notes.push(stamp("新增事项"));
                self.upsert(it);
            }
        }
        let problems = self.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Invalid { problems })
        }
    }
}

/// A catalog directory.
#[derive(Debug, Clone)]
pub struct CatalogDir {
    root: PathBuf,
}

/// A labelled example from people's decisions (arbitration rulings, dispatchers'
/// reclassifications): `label` is an item code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingExample {
    /// The petition's text, digit runs masked.
    pub text: String,
    /// The item code it was filed under.
    pub label: String,
}

/// Parses `v3` or `3` into 3.
pub fn version_number(v: &str) -> Option<u32> {
    let v = v.trim();
    v.strip_prefix('v').unwrap_or(v).parse().ok()
}

impl CatalogDir {
    /// Opens (creating if needed) a catalog directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CatalogError> {
        let root = path.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|e| CatalogError::io(&root, e))?;
        Ok(CatalogDir { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file_of(&self, n: u32) -> PathBuf {
        self.root.join(format!("v{n}.json"))
    }

    fn numbers(&self) -> Result<Vec<u32>, CatalogError> {
        let rd = fs::read_dir(&self.root).map_err(|e| CatalogError::io(&self.root, e))?;
        let mut ns = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| CatalogError::io(&self.root, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_suffix(".json")
                .and_then(|s| s.strip_prefix('v'))
                .and_then(|s| s.parse::<u32>().ok())
            {
                ns.push(n);
            }
        }
        ns.sort_unstable();
        Ok(ns)
    }

    /// Stored versions, oldest first (`v1`, `v2`, …).
    pub fn list_versions(&self) -> Result<Vec<String>, CatalogError> {
        Ok(self
            .numbers()?
            .into_iter()
            .map(|n| format!("v{n}"))
            .collect())
    }

    /// Validates and stores a catalog as a new version; returns its label (`v{N}`), which
    /// also becomes the stored catalog's `version`. Does not activate it.
    pub fn import(&self, catalog: &Catalog) -> Result<String, CatalogError> {
        let tmp = self
            .root
            .join(format!(".import-{}.tmp", std::process::id()));
        let mut n = self.numbers()?.last().copied().unwrap_or(0) + 1;
        loop {
            let (c, json) = stored_form(catalog, n)?;
            write_file(&tmp, json.as_bytes())?;
            let dest = self.file_of(n);
            match fs::hard_link(&tmp, &dest) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    return Ok(c.version);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Another import took this number; try the next one.
                    n += 1;
                }
                Err(_) if !dest.exists() => {
                    // No hard links here (some network file systems): fall back to rename.
                    fs::rename(&tmp, &dest).map_err(|e| CatalogError::io(&dest, e))?;
                    return Ok(c.version);
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(CatalogError::io(&dest, e));
                }
            }
        }
    }

    /// Makes a stored version the active one.
    pub fn activate(&self, version: &str) -> Result<(), CatalogError> {
        let n = version_number(version)
            .filter(|&n| self.file_of(n).is_file())
            .ok_or_else(|| CatalogError::UnknownVersion(version.to_string()))?;
        let tmp = self
            .root
            .join(format!(".active-{}.tmp", std::process::id()));
        write_file(&tmp, format!("v{n}\n").as_bytes())?;
        let dest = self.root.join(ACTIVE);
        fs::rename(&tmp, &dest).map_err(|e| CatalogError::io(&dest, e))
    }

    /// The active version's label, if any.
    pub fn active_version(&self) -> Result<Option<String>, CatalogError> {
        let p = self.root.join(ACTIVE);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CatalogError::io(p, e)),
        }
    }

    /// The active catalog.
    pub fn active(&self) -> Result<Catalog, CatalogError> {
        let v = self
            .active_version()?
            .ok_or_else(|| CatalogError::NoActiveVersion(self.root.clone()))?;
        self.load(&v)
    }

    /// A stored version (`v3` or `3`), validated on load.
    pub fn load(&self, version: &str) -> Result<Catalog, CatalogError> {
        let n =
            version_number(version).ok_or_else(|| CatalogError::UnknownVersion(version.into()))?;
        let path = self.file_of(n);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CatalogError::UnknownVersion(version.into()));
            }
            Err(e) => return Err(CatalogError::io(path, e)),
        };
        read_stored(&text, n)
    }

    /// Applies an arbitration clarification to the active catalog, stores the result as a new
    /// version and activates it (rulings take effect at once); returns the new version.
    pub fn clarify(&self, c: &Clarification) -> Result<String, CatalogError> {
        let mut cat = self.active()?;
        cat.apply(c)?;
        let v = self.import(&cat)?;
        self.activate(&v)?;
        Ok(v)
    }
}

/// The stored form of version `n` of `catalog` (validated first): the catalog with its
/// `version` set to `v{n}`, as JSON. Every store keeps versions in this form.
pub fn stored_form(catalog: &Catalog, n: u32) -> Result<(Catalog, String), CatalogError> {
    let problems = catalog.validate();
    if !problems.is_empty() {
        return Err(CatalogError::Invalid { problems });
    }
    let mut c = catalog.clone();
    c.version = format!("v{n}");
    let json = format::write(&c, Format::Json)?;
    Ok((c, json))
}

/// Reads version `n` back from its [`stored_form`], validated.
pub fn read_stored(text: &str, n: u32) -> Result<Catalog, CatalogError> {
    let units = UnitDirectory::default();
    let label = format!("v{n}");
    let mut c = format::read(
        text,
        Format::Json,
        &ReadOptions {
            units: &units,
            version: &label,
        },
        None,
    )?;
    c.version = label;
    Ok(c)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    let mut f = fs::File::create(path).map_err(|e| CatalogError::io(path, e))?;
    f.write_all(bytes).map_err(|e| CatalogError::io(path, e))?;
    f.sync_all().map_err(|e| CatalogError::io(path, e))
}
