//! `ClassificationService.Suggest` over gRPC.

use minyi_core::auth::Role;
use minyi_core::grpc::{claims, invalid_argument, require_role};
use minyi_core::petition::Violations;
use minyi_proto::classification::classification_service_server::ClassificationService;
use minyi_proto::classification::{SuggestRequest, SuggestResponse};
use minyi_proto::common::Suggestion;
use tonic::{Request, Response, Status};

use crate::router::RouterHandle;

/// Longest text analysed for suggestions; longer input is cut, never refused.
const MAX_SUGGEST_CHARS: usize = 20_000;

#[derive(Clone)]
pub struct ClassificationApi {
    router: RouterHandle,
}

impl ClassificationApi {
    pub fn new(router: RouterHandle) -> Self {
        Self { router }
    }
}

#[tonic::async_trait]
impl ClassificationService for ClassificationApi {
    #[tracing::instrument(skip_all, err(level = "info"))]
    async fn suggest(
        &self,
        request: Request<SuggestRequest>,
    ) -> Result<Response<SuggestResponse>, Status> {
        let who = claims(&request)?;
        require_role(
            &who,
            &[Role::Agent, Role::Dispatcher, Role::Arbitrator, Role::Admin],
            "ask for suggestions",
        )?;
        let r = request.into_inner();
        let mut v = Violations::default();
        if r.text.trim().is_empty() {
            v.add("text", "must not be empty");
        }
        if r.k > 20 {
            v.add("k", "at most 20");
        }
        let location = r.location.unwrap_or_default();
        let point = location.point.map(|p| (p.latitude, p.longitude));
        if let Some((lat, lon)) = point
            && !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        {
            v.add("location.point", "latitude/longitude out of range");
        }
        if !v.is_empty() {
            return Err(invalid_argument(&v));
        }
        let text: String = r.text.chars().take(MAX_SUGGEST_CHARS).collect();
        let k = if r.k == 0 { 5 } else { r.k as usize };
        let router = self.router.current().ok_or_else(|| {
            Status::unavailable("the classifier is still training; try again shortly")
        })?;
        let place = router.locate(&text, &location.address, point);
        let (suggestions, routing) = router.preview(&text, &place, k);
        let threshold = router.model.auto_threshold();
        let auto = routing.decision == crate::router::AUTO;
        Ok(Response::new(SuggestResponse {
            suggestions: suggestions
                .into_iter()
                .map(|s| Suggestion {
                    item_code: s.item_code,
                    item_name: s.item_name,
                    path: s.path,
                    unit: s.unit,
                    confidence: s.confidence,
                })
                .collect(),
            auto,
            auto_threshold: threshold.unwrap_or(1.0),
            auto_unit: if auto {
                routing.lead_unit
            } else {
                String::new()
            },
            street: place.street.unwrap_or_default(),
            community: place.community.unwrap_or_default(),
            model_version: router.model.version().to_owned(),
            catalog_version: router.catalog.version.clone(),
        }))
    }
}
