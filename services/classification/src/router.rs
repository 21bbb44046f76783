//! The routing decision, pure: no I/O, unit-tested below.

use std::sync::{Arc, RwLock};

use minyi_catalog::model::CatalogItem;
use minyi_catalog::{Catalog, Gazetteer, Resolution, UnresolvedReason};
use minyi_classifier::{Model, Prediction};

use crate::model::{OWNER_TOP_K, STREET_OWNER, owner_confidence, owner_of};
use minyi_core::store::{RoutingRecord, SuggestionRecord};

/// Everything a decision needs, swapped as a whole when a new model or catalog version is
/// activated, so one decision never mixes versions.
pub struct Router {
    pub catalog: Arc<Catalog>,
    pub gazetteer: Arc<Gazetteer>,
    pub model: Arc<Model>,
    /// Unit-level automatic dispatch (`auto_dispatch_by_unit`): when the item is uncertain but
    /// the unit is not, the owner confidence at or above which the petition goes to that unit
    /// (chosen in training, see [`crate::model::owner_threshold`]). `None`: off.
    pub owner_threshold: Option<f64>,
}

/// The current [`Router`], replaceable without a restart. Empty while the first model is
/// still training: the worker then waits (tickets wait in their queue) and `Suggest` answers
/// `Unavailable`, rather than anything deciding without a model.
#[derive(Clone, Default)]
pub struct RouterHandle {
    current: Arc<RwLock<Option<Arc<Router>>>>,
    ready: Arc<tokio::sync::Notify>,
}

impl RouterHandle {
    pub fn new(router: Router) -> Self {
        let h = Self::default();
        h.swap(router);
        h
    }

    /// A handle with no router yet (the first model is being trained).
    pub fn pending() -> Self {
        Self::default()
    }

    pub fn current(&self) -> Option<Arc<Router>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a router is in place.
    pub async fn wait_ready(&self) -> Arc<Router> {
        loop {
            let notified = self.ready.notified();
            if let Some(r) = self.current() {
                return r;
            }
            notified.await;
        }
    }

    /// Activates a new model and/or catalog; decisions in flight finish on the old one.
    pub fn swap(&self, router: Router) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(router));
        self.ready.notify_waiters();
    }
}

pub const AUTO: &str = "auto";
pub const NEEDS_DISPATCHER: &str = "needs_dispatcher";

/// The location as the gazetteer resolved it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub street: Option<String>,
    pub community: Option<String>,
    /// The places the petition text names, when the location comes from them (the ticket
    /// had no address or coordinates, or its address names no known place).
    pub named_in_text: Vec<String>,
}

impl Router {
    /// Where the matter is: the address or coordinates as the gazetteer resolves them. When
    /// the ticket has no coordinates and no address that names a known place, the places the
    /// petition's text names, if they all lie in one street ([`Gazetteer::resolve_message`]);
    /// anything else (an ambiguous address, coordinates outside the district) stays
    /// unresolved for a dispatcher.
    pub fn locate(&self, text: &str, address: &str, point: Option<(f64, f64)>) -> Place {
        let address = (!address.trim().is_empty()).then_some(address);
        let place = |r: &Resolution, named_in_text: Vec<String>| Place {
            street: r.street().map(str::to_owned),
            community: r.community().map(str::to_owned),
            named_in_text,
        };
        match self.gazetteer.resolve(address, point) {
            r @ Resolution::Resolved { .. } => place(&r, Vec::new()),
            Resolution::Unresolved {
                reason: UnresolvedReason::NoMatch,
            } if point.is_none() => match self.gazetteer.resolve_message(text) {
                (r @ Resolution::Resolved { .. }, names) => place(&r, names),
                _ => Place::default(),
            },
            Resolution::Unresolved { .. } => Place::default(),
        }
    }

    /// Top-`k` catalog items for a text, with the unit that would lead each.
    pub fn suggest(&self, text: &str, place: &Place, k: usize) -> Vec<SuggestionRecord> {
        self.suggestions(&self.model.predict(text, k), place)
    }

    fn suggestions(&self, predictions: &[Prediction], place: &Place) -> Vec<SuggestionRecord> {
        predictions
            .iter()
            .filter_map(|p| {
                let item = self.catalog.get(&p.label)?;
                Some(SuggestionRecord {
                    item_code: item.code.clone(),
                    item_name: item.name.clone(),
                    path: item.path.to_vec(),
                    unit: item
                        .owner(place.street.as_deref())
                        .unwrap_or_default()
                        .to_owned(),
                    confidence: p.confidence,
                })
            })
            .collect()
    }

    /// Unit-level automatic dispatch: the item is uncertain, but the unit that handles the
    /// best items is sure (owner confidence at or above [`Router::owner_threshold`]) and known
    /// (a territorial owner needs a resolved street). Sends `r` to that unit with the best
    /// item as a guess the handler may correct, and the tightest time limits and highest grade
    /// among that unit's candidate items. Returns whether it did.
    fn unit_level(&self, r: &mut RoutingRecord, predictions: &[Prediction], place: &Place) -> bool {
        let Some(threshold) = self.owner_threshold else {
            return false;
        };
        let Some((owner, confidence)) = owner_confidence(&self.catalog, predictions) else {
            return false;
        };
        if confidence < threshold {
            return false;
        }
        let unit = match (owner, place.street.as_deref()) {
            (STREET_OWNER, Some(street)) => street,
            (STREET_OWNER, None) => return false,
            (unit, _) => unit,
        };
        let candidates: Vec<_> = predictions
            .iter()
            .filter(|p| owner_of(&self.catalog, &p.label) == Some(owner))
            .filter_map(|p| self.catalog.get(&p.label))
            .collect();
        let Some(best) = candidates.first() else {
            return false;
        };
        send_to(r, best, unit);
        let tightest = |f: fn(&CatalogItem) -> u32| {
            candidates
                .iter()
                .map(|i| f(i))
                .filter(|&v| v > 0)
                .min()
                .unwrap_or(0)
        };
        r.accept_hours = tightest(|i| i.limits.accept_hours);
        r.respond_hours = tightest(|i| i.limits.respond_hours);
        r.complete_days = tightest(|i| i.limits.complete_days);
        if candidates.iter().any(|i| i.grade.as_str() == "urgent") {
            r.grade = "urgent".into();
        }
        r.reason = format!(
            "unit-level: {unit} at confidence {confidence:.2} (threshold {threshold:.2}); the item \
             ({:.2}) is a best guess, with the tightest limits of {} candidate items",
            r.confidence,
            candidates.len()
        );
        true
    }

    /// Decides: automatic routing when the classifier is confident (calibrated threshold chosen
    /// in training for the target precision) and the owner is known; otherwise a dispatcher
    /// picks, with the top-5 suggestions. With [`Router::owner_threshold`] set, an uncertain
    /// item whose unit is sure goes to that unit instead (see `unit_level`). A territorial
    /// item with an unresolved location always goes to a dispatcher: never a guessed street.
    pub fn decide(&self, text: &str, address: &str, point: Option<(f64, f64)>) -> RoutingRecord {
        let place = self.locate(text, address, point);
        let predictions = self.model.predict(text, OWNER_TOP_K);
        self.decide_for(&place, &predictions)
    }

    /// What an agent sees while typing: the top-`k` items, and the routing [`Router::decide`]
    /// would make of the text at `place` now (so "automatic" means what the worker will do,
    /// unit-level dispatch included).
    pub fn preview(
        &self,
        text: &str,
        place: &Place,
        k: usize,
    ) -> (Vec<SuggestionRecord>, RoutingRecord) {
        let predictions = self.model.predict(text, OWNER_TOP_K);
        let routing = self.decide_for(place, &predictions);
        // Up to OWNER_TOP_K the best k of these are what `predict(text, k)` gives.
        let shown = if k <= predictions.len() {
            self.suggestions(&predictions[..k], place)
        } else {
            self.suggest(text, place, k)
        };
        (shown, routing)
    }

    /// [`Router::decide`] on the `OWNER_TOP_K` best predictions for a text at `place`; the
    /// reason says where a location read from the petition text came from.
    fn decide_for(&self, place: &Place, predictions: &[Prediction]) -> RoutingRecord {
        let mut r = self.decide_at(place, predictions);
        if !place.named_in_text.is_empty() {
            let located = format!(
                "located by the petition text: {}",
                place.named_in_text.join("、")
            );
            r.reason = if r.reason.is_empty() {
                located
            } else {
                format!("{}; {located}", r.reason)
            };
        }
        r
    }

    fn decide_at(&self, place: &Place, predictions: &[Prediction]) -> RoutingRecord {
        let suggestions = self.suggestions(&predictions[..predictions.len().min(5)], place);
        let mut r = RoutingRecord {
            suggestions,
            street: place.street.clone().unwrap_or_default(),
            community: place.community.clone().unwrap_or_default(),
            model_version: self.model.version().to_owned(),
            catalog_version: self.catalog.version.clone(),
            ..RoutingRecord::default()
        };
        let Some(top) = r.suggestions.first().cloned() else {
            r.decision = NEEDS_DISPATCHER.into();
            r.reason = "the classifier has no suggestion for this text".into();
            return r;
        };
        let Some(item) = self.catalog.get(&top.item_code) else {
            r.decision = NEEDS_DISPATCHER.into();
            r.reason = format!("item {} is not in the active catalog", top.item_code);
            return r;
        };
        r.item_code = item.code.clone();
        r.item_name = item.name.clone();
        r.confidence = top.confidence;
        r.grade = item.grade.as_str().to_owned();
        r.accept_hours = item.limits.accept_hours;
        r.respond_hours = item.limits.respond_hours;
        r.complete_days = item.limits.complete_days;
        let threshold = self.model.auto_threshold();
        let confident = threshold.is_some_and(|t| top.confidence >= t);
        if !confident && self.unit_level(&mut r, predictions, place) {
            return r;
        }
        match item.owner(place.street.as_deref()) {
            _ if !confident => {
                r.decision = NEEDS_DISPATCHER.into();
                r.reason = match threshold {
                    Some(t) => format!(
                        "confidence {:.2} is below the auto-dispatch threshold {t:.2}",
                        top.confidence
                    ),
                    None => "the model has no auto-dispatch threshold".into(),
                };
            }
            None => {
                r.decision = NEEDS_DISPATCHER.into();
                r.reason =
                    "a territorial (属地) item, but the location did not resolve to a street"
                        .into();
            }
            Some(owner) => send_to(&mut r, item, owner),
        }
        r
    }
}

/// Automatic routing of `r` to `unit` as lead, with `item`'s co-handling units.
fn send_to(r: &mut RoutingRecord, item: &CatalogItem, unit: &str) {
    r.decision = AUTO.into();
    r.lead_unit = unit.to_owned();
    r.co_units = item
        .co_units
        .iter()
        .filter(|u| u.as_str() != unit)
        .cloned()
        .collect();
}
