//! People's decisions as training examples for the classifier: arbitration rulings and
//! dispatchers' reclassifications are recorded in the catalog store (`{text, label, source, …}`),
//! from which the classification service retrains without a restart
//! (`minyi_classification::watch`). Digit runs in the text (phone and ID numbers a citizen
//! typed) are masked before they are written.

use minyi_catalog::CatalogError;
use minyi_core::store::CatalogStore;

/// Records one example, its digit runs masked.
pub async fn record(
    store: &dyn CatalogStore,
    text: &str,
    label: &str,
    extra: serde_json::Value,
) -> Result<(), CatalogError> {
    store
        .record_example(&minyi_core::pii::mask_numbers(text), label, extra)
        .await
}
