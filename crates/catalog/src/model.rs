//! The catalog model: units, items and the versioned catalog that holds them.
//!
//! Everything here is plain data with serde derives; parsing of operator files (which must
//! survive malformed input and report every problem) lives in [`crate::format`], and checks in
//! [`crate::validate`].

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of organisation a unit is; decides where it sits in the directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A district department (区直部门) or a city bureau's district branch.
    Department,
    /// A street office (街道办事处), the territorial owner of 属地 matters.
    Street,
    /// A community (社区) under a street.
    Community,
    /// A grid (网格) under a community.
    Grid,
    /// A public utility (water, power, gas, telecoms).
    Utility,
}

impl UnitKind {
    /// The lowercase name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Department => "department",
            UnitKind::Street => "street",
            UnitKind::Community => "community",
            UnitKind::Grid => "grid",
            UnitKind::Utility => "utility",
        }
    }

    /// Parses the file spelling (also accepts the Chinese names).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "department" | "部门" => Some(UnitKind::Department),
            "street" | "街道" => Some(UnitKind::Street),
            "community" | "社区" => Some(UnitKind::Community),
            "grid" | "网格" => Some(UnitKind::Grid),
            "utility" | "公用事业" => Some(UnitKind::Utility),
            _ => None,
        }
    }
}

/// A unit that can receive tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Stable ASCII code, e.g. `ST-GM` (光明街道) or `DEP-ZJ` (区住建局). Tickets and catalog
    /// items refer to units only by this code, so it never changes once published.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Kind of unit.
    pub kind: UnitKind,
    /// The enclosing unit (community → street, grid → community); `None` for top-level units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// The set of units, indexed by code.
///
/// Serialised as a plain list of [`Unit`]s; the index is rebuilt on load. On duplicate codes
/// the first unit wins in lookups (validation reports the duplicate).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Unit>", into = "Vec<Unit>")]
pub struct UnitDirectory {
    units: Vec<Unit>,
    by_code: HashMap<String, usize>,
}

impl fmt::Debug for UnitDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitDirectory")
            .field("units", &self.units.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for UnitDirectory {
    fn eq(&self, other: &Self) -> bool {
        self.units == other.units
    }
}

impl From<Vec<Unit>> for UnitDirectory {
    fn from(units: Vec<Unit>) -> Self {
        let mut by_code = HashMap::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            by_code.entry(u.code.clone()).or_insert(i);
        }
        UnitDirectory { units, by_code }
    }
}

impl From<UnitDirectory> for Vec<Unit> {
    fn from(d: UnitDirectory) -> Self {
        d.units
    }
}

impl UnitDirectory {
    /// Builds a directory from a list of units.
    pub fn new(units: Vec<Unit>) -> Self {
        units.into()
    }

    /// The built-in directory of 光明区 (see [`crate::units`]).
    pub fn guangming() -> Self {
        crate::units::guangming_units()
    }

    /// The unit with this code.
    pub fn get(&self, code: &str) -> Option<&Unit> {
        self.by_code.get(code).and_then(|&i| self.units.get(i))
    }

    /// Whether a unit with this code exists.
    pub fn contains(&self, code: &str) -> bool {
        self.by_code.contains_key(code)
    }

    /// All units in directory order.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Units of one kind, in directory order.
    pub fn of_kind(&self, kind: UnitKind) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(move |u| u.kind == kind)
    }

    /// Direct children of a unit (communities of a street, grids of a community).
    pub fn children<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units
            .iter()
            .filter(move |u| u.parent.as_deref() == Some(code))
    }

    /// The street a unit belongs to (itself for a street); `None` for departments, utilities
    /// and unknown codes. Walks at most a few parent links, so a cyclic directory cannot hang.
    pub fn street_of(&self, code: &str) -> Option<&Unit> {
        let mut cur = self.get(code)?;
        for _ in 0..8 {
            if cur.kind == UnitKind::Street {
                return Some(cur);
            }
            cur = self.get(cur.parent.as_deref()?)?;
        }
        None
    }
}

/// Who owns the matters of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Responsibility {
    /// 职能: a named unit (department or utility) handles it wherever it happens.
    Functional {
        /// Code of the responsible unit.
        unit: String,
    },
    /// 属地: the street office where the matter is located handles it.
    Territorial,
}

impl Responsibility {
    /// Functional responsibility of `unit`.
    pub fn functional(unit: impl Into<String>) -> Self {
        Responsibility::Functional { unit: unit.into() }
    }
}

impl fmt::Display for Responsibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Responsibility::Functional { unit } => write!(f, "functional:{unit}"),
            Responsibility::Territorial => f.write_str("territorial"),
        }
    }
}

/// Handling grade (分级).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 紧急: danger to people or property; limits in hours.
    Urgent,
    /// 一般: everything else.
    Normal,
}

impl Grade {
    /// The file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Urgent => "urgent",
            Grade::Normal => "normal",
        }
    }

    /// Parses `urgent`/`normal` (any case) or 紧急/一般.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("urgent") || s == "紧急" {
            Some(Grade::Urgent)
        } else if s.eq_ignore_ascii_case("normal") || s == "一般" {
            Some(Grade::Normal)
        } else {
            None
        }
    }
}

/// Time limits of an item, counted on the official working calendar from dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Working hours to accept (签收) or return the ticket.
    pub accept_hours: u32,
    /// Working hours to first contact the citizen.
    pub respond_hours: u32,
    /// Working days to complete (办结).
    pub complete_days: u32,
}

/// One matter type of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// Stable code, e.g. `CG-03-012`; tickets refer to items by it across versions.
    pub code: String,
    /// Category path: major → minor → item.
    pub path: [String; 3],
    /// Display name.
    pub name: String,
    /// What the item covers, for dispatchers.
    pub description: String,
    /// Keywords for search and classification.
    pub keywords: Vec<String>,
    /// Typical citizen phrasings.
    pub phrasings: Vec<String>,
    /// Who owns it.
    pub responsibility: Responsibility,
    /// Co-handling units (协办), by code.
    #[serde(default)]
    pub co_units: Vec<String>,
    /// Handling grade.
    pub grade: Grade,
    /// Time limits.
    pub limits: Limits,
    /// Clarifications, e.g. from arbitration rulings, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl CatalogItem {
    /// The unit that owns a matter of this item located in `street` (a street code from
    /// location resolution): the functional unit, or the street for territorial items.
    /// `None` for a territorial item whose location is unresolved: the caller decides the
    /// fallback (arbitration names the district government by default), never this crate.
    pub fn owner<'a>(&'a self, street: Option<&'a str>) -> Option<&'a str> {
        match &self.responsibility {
            Responsibility::Functional { unit } => Some(unit),
            Responsibility::Territorial => street,
        }
    }

    /// Who handles this item wherever it happens: the functional unit, or [`STREET_OWNER`]
    /// ("the street office of the place") for a territorial item.
    pub fn owner_key(&self) -> &str {
        match &self.responsibility {
            Responsibility::Functional { unit } => unit,
            Responsibility::Territorial => STREET_OWNER,
        }
    }
}

/// [`CatalogItem::owner_key`] of every territorial item: the street office of the place.
pub const STREET_OWNER: &str = "(street)";

/// A version of the catalog together with the unit directory it refers to.
///
/// Items are kept private so that the code index stays in step with them; build a catalog
/// with [`Catalog::new`] and change it with [`Catalog::upsert`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "CatalogRepr", into = "CatalogRepr")]
pub struct Catalog {
    /// Version label; [`crate::store::CatalogDir`] sets it to `v{N}` on import.
    pub version: String,
    units: UnitDirectory,
    items: Vec<CatalogItem>,
    by_code: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct CatalogRepr {
    version: String,
    units: UnitDirectory,
    items: Vec<CatalogItem>,
}

impl From<CatalogRepr> for Catalog {
    fn from(r: CatalogRepr) -> Self {
        Catalog::new(r.version, r.items, r.units)
    }
}

impl From<Catalog> for CatalogRepr {
    fn from(c: Catalog) -> Self {
        CatalogRepr {
            version: c.version,
            units: c.units,
            items: c.items,
        }
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("version", &self.version)
            .field("units", &self.units)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.units == other.units && self.items == other.items
    }
}

impl Catalog {
    /// Builds a catalog. Does not validate: call [`Catalog::validate`].
    pub fn new(version: impl Into<String>, items: Vec<CatalogItem>, units: UnitDirectory) -> Self {
        let mut c = Catalog {
            version: version.into(),
            units,
            items,
            by_code: HashMap::new(),
        };
        c.reindex();
        c
    }

    /// The generated demo catalog of 光明区: exactly 3,469 items (see [`crate::demo`]).
    pub fn demo() -> Self {
        crate::demo::demo_catalog()
    }

    fn reindex(&mut self) {
        self.by_code.clear();
        for (i, it) in self.items.iter().enumerate() {
            self.by_code.entry(it.code.clone()).or_insert(i);
        }
    }

    /// Items in catalog order.
    pub fn items(&self) -> &[CatalogItem] {
        &self.items
    }

    /// The unit directory.
    pub fn units(&self) -> &UnitDirectory {
        &self.units
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item with this code.
    pub fn get(&self, code: &str) -> Option<&CatalogItem> {
        self.by_code.get(code).and_then(|&i| self.items.get(i))
    }

    /// How sure a ranking of items is of the unit, whichever of its items it is: the owner
    /// ([`CatalogItem::owner_key`]) of the first of `ranked` (item code, confidence), best
    /// first, and the summed confidence of the ranked items with that owner. `None` when
    /// `ranked` is empty or its first item is not in the catalog.
    pub fn owner_confidence<'c>(
        &self,
        ranked: impl IntoIterator<Item = (&'c str, f64)>,
    ) -> Option<(&str, f64)> {
        let mut ranked = ranked.into_iter();
        let (first, mut confidence) = ranked.next()?;
        let owner = self.get(first)?.owner_key();
        for (code, c) in ranked {
            if self.get(code).is_some_and(|i| i.owner_key() == owner) {
                confidence += c;
            }
        }
        Some((owner, confidence))
    }

    /// Replaces the item with the same code, or appends it; returns the replaced item.
    pub fn upsert(&mut self, item: CatalogItem) -> Option<CatalogItem> {
        match self.by_code.get(&item.code) {
            Some(&i) => self
                .items
                .get_mut(i)
                .map(|slot| std::mem::replace(slot, item)),
            None => {
                self.by_code.insert(item.code.clone(), self.items.len());
                self.items.push(item);
                None
            }
        }
    }

    /// Consumes the catalog into its parts.
    pub fn into_parts(self) -> (String, Vec<CatalogItem>, UnitDirectory) {
        (self.version, self.items, self.units)
    }

    /// SHA-256 (hex) of the canonical JSON of units and items. The version label is left
    /// out, so the same content imported twice has the same hash.
    pub fn content_hash(&self) -> String {
        #[derive(Serialize)]
        struct Content<'a> {
            units: &'a [Unit],
            items: &'a [CatalogItem],
        }
        let mut hasher = Sha256::new();
        let content = Content {
            units: self.units.units(),
            items: &self.items,
        };
        // Serialising plain data to a Vec cannot fail; an empty hash input would only make the
        // hash differ, never collide silently with real content.
        if let Ok(bytes) = serde_json::to_vec(&content) {
            hasher.update(&bytes);
        }
        let digest = hasher.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every problem of this catalog (see [`crate::validate`]); empty when valid.
    pub fn validate(&self) -> Vec<crate::validate::Problem> {
        crate::validate::validate_catalog(self)
    }
}
