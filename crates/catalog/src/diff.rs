//! Differences between two catalog versions, by item code.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::model::{Catalog, CatalogItem};

/// What changed from an old catalog to a new one. Items are matched by code; lists are in the
/// new catalog's order (removed: the old one's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogDiff {
    /// Codes only in the new catalog.
    pub added: Vec<String>,
    /// Codes only in the old catalog.
    pub removed: Vec<String>,
    /// Codes in both whose content differs, with the names of the changed fields
    /// (`name`, `responsibility`, `limits.complete_days` …).
    pub changed: Vec<(String, Vec<String>)>,
}

impl CatalogDiff {
    /// Whether the item lists are the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two catalogs item by item.
pub fn diff(old: &Catalog, new: &Catalog) -> CatalogDiff {
    let old_by: HashMap<&str, &CatalogItem> =
        old.items().iter().map(|i| (i.code.as_str(), i)).collect();
    let mut out = CatalogDiff::default();
    for it in new.items() {
        match old_by.get(it.code.as_str()) {
            None => out.added.push(it.code.clone()),
            Some(prev) => {
                let fields = changed_fields(prev, it);
                if !fields.is_empty() {
                    out.changed.push((it.code.clone(), fields));
                }
            }
        }
    }
    out.removed = old
        .items()
        .iter()
        .filter(|i| new.get(&i.code).is_none())
        .map(|i| i.code.clone())
        .collect();
    out
}

fn changed_fields(a: &CatalogItem, b: &CatalogItem) -> Vec<String> {
    let mut f = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            f.push(name.to_string());
        }
    };
    check("path", a.path != b.path);
    check("name", a.name != b.name);
    check("description", a.description != b.description);
    check("keywords", a.keywords != b.keywords);
    check("phrasings", a.phrasings != b.phrasings);
    check("responsibility", a.responsibility != b.responsibility);
    check("co_units", a.co_units != b.co_units);
    check("grade", a.grade != b.grade);
    check(
        "limits.accept_hours",
        a.limits.accept_hours != b.limits.accept_hours,
    );
    check(
        "limits.respond_hours",
        a.limits.respond_hours != b.limits.respond_hours,
    );
    check(
        "limits.complete_days",
        a.limits.complete_days != b.limits.complete_days,
    );
    check("notes", a.notes != b.notes);
    f
}

impl fmt::Display for CatalogDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} added, {} removed, {} changed",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        )?;
        for c in &self.added {
            writeln!(f, "+ {c}")?;
        }
        for c in &self.removed {
            writeln!(f, "- {c}")?;
        }
        for (c, fields) in &self.changed {
            writeln!(f, "~ {c}: {}", fields.join(", "))?;
        }
        Ok(())
    }
}
