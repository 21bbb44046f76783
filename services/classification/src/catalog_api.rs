//! `CatalogService`: the versioned responsibility catalog over gRPC, on the catalog store this
//! process classifies from (the database in production, shared by every replica). The same
//! operations as `minyi catalog …`; an activated version reaches the classifiers through
//! [`crate::watch`] without a restart.

use std::sync::Arc;

use minyi_catalog::format::{self, Format, ReadOptions};
use minyi_catalog::{Catalog, CatalogError, UnitDirectory};
use minyi_core::auth::Role;
use minyi_core::grpc::{claims, invalid_argument, require_role};
use minyi_core::petition::Violations;
use minyi_core::store::CatalogStore;
use minyi_proto::catalog::catalog_service_server::CatalogService;
use minyi_proto::catalog::*;
use tonic::{Request, Response, Status};

const READERS: &[Role] = &[
    Role::Admin,
    Role::Dispatcher,
    Role::Arbitrator,
    Role::Supervisor,
];
const WRITERS: &[Role] = &[Role::Admin];

#[derive(Clone)]
pub struct CatalogApi {
    store: Arc<dyn CatalogStore>,
}

impl CatalogApi {
    pub fn new(store: Arc<dyn CatalogStore>) -> Self {
        Self { store }
    }

    /// `version`, stored with the content of `c` (the hash leaves the version label out).
    async fn version_of(&self, version: &str, c: &Catalog) -> Result<CatalogVersion, Status> {
        let active = self.store.active_version().await.map_err(status)?;
        Ok(CatalogVersion {
            version: version.to_owned(),
            items: c.len() as u32,
            sha256: c.content_hash(),
            active: active.as_deref() == Some(version),
        })
    }
}

/// A catalog error as a gRPC status: problems in a file name their place and field.
fn status(e: CatalogError) -> Status {
    match e {
        CatalogError::Invalid { problems } => {
            let mut v = Violations::default();
            for p in &problems {
                v.add(&format!("{}: {}", p.location, p.field), p.message.clone());
            }
            invalid_argument(&v)
        }
        CatalogError::UnknownVersion(v) => {
            Status::not_found(format!("unknown catalog version {v:?}"))
        }
        e @ (CatalogError::NoActiveVersion(_) | CatalogError::NoActiveVersionIn(_)) => {
            Status::failed_precondition(e.to_string())
        }
        e @ CatalogError::Backend(_) => Status::unavailable(e.to_string()),
        e @ (CatalogError::Parse { .. } | CatalogError::Format(_)) => {
            Status::invalid_argument(e.to_string())
        }
        e => Status::internal(e.to_string()),
    }
}

/// Parses a file sent over the wire (CSV with the built-in unit directory).
fn parse(file: &CatalogFile) -> Result<Catalog, CatalogError> {
    let format =
        Format::from_name(&file.format).ok_or_else(|| CatalogError::Format(file.format.clone()))?;
    let units = UnitDirectory::guangming();
    let opts = ReadOptions {
        units: &units,
        version: "imported",
    };
    format::read(&file.content, format, &opts, None)
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        require_role(&claims(&request)?, READERS, "read the catalog")?;
        let active = self.store.active_version().await.map_err(status)?;
        let mut versions = Vec::new();
        for v in self.store.list_versions().await.map_err(status)? {
            let (items, sha256) = self.store.summary(&v).await.map_err(status)?;
            versions.push(CatalogVersion {
                active: active.as_deref() == Some(v.as_str()),
                version: v,
                items: items as u32,
                sha256,
            });
        }
        Ok(Response::new(ListVersionsResponse { versions }))
    }

    async fn validate(
        &self,
        request: Request<CatalogFile>,
    ) -> Result<Response<ValidateResponse>, Status> {
        require_role(&claims(&request)?, READERS, "validate catalogs")?;
        let r = match parse(&request.into_inner()) {
            Ok(c) => ValidateResponse {
                ok: true,
                items: c.len() as u32,
                problems: vec![],
            },
            Err(CatalogError::Invalid { problems }) => ValidateResponse {
                ok: false,
                items: 0,
                problems: problems
                    .iter()
                    .map(|p| Problem {
                        location: p.location.to_string(),
                        field: p.field.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
            },
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(r))
    }

    async fn import(
        &self,
        request: Request<ImportRequest>,
    ) -> Result<Response<CatalogVersion>, Status> {
        require_role(&claims(&request)?, WRITERS, "import catalogs")?;
        let r = request.into_inner();
        let file = r
            .file
            .ok_or_else(|| Status::invalid_argument("file: required"))?;
        let catalog = parse(&file).map_err(status)?;
        let version = self.store.import(&catalog).await.map_err(status)?;
        if r.activate {
            self.store.activate(&version).await.map_err(status)?;
        }
        // Stored as parsed: its count and hash need no reload.
        Ok(Response::new(self.version_of(&version, &catalog).await?))
    }

    async fn diff(&self, request: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        require_role(&claims(&request)?, READERS, "read the catalog")?;
        let r = request.into_inner();
        let (from, to) = (
            self.store.load(&r.from).await.map_err(status)?,
            self.store.load(&r.to).await.map_err(status)?,
        );
        let d = minyi_catalog::diff(&from, &to);
        Ok(Response::new(DiffResponse {
            added: d.added,
            removed: d.removed,
            changed: d
                .changed
                .into_iter()
                .map(|(code, fields)| ChangedItem { code, fields })
                .collect(),
        }))
    }

    async fn activate(
        &self,
        request: Request<ActivateRequest>,
    ) -> Result<Response<CatalogVersion>, Status> {
        require_role(&claims(&request)?, WRITERS, "activate catalog versions")?;
        let r = request.into_inner();
        // Loading validates: a version that does not load is never made active.
        let catalog = self.store.load(&r.version).await.map_err(status)?;
        self.store
            .activate(&catalog.version)
            .await
            .map_err(status)?;
        tracing::info!(version = %catalog.version, "catalog version activated");
        Ok(Response::new(
            self.version_of(&catalog.version, &catalog).await?,
        ))
    }

    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<CatalogFile>, Status> {
        require_role(&claims(&request)?, READERS, "read the catalog")?;
        let r = request.into_inner();
        let name = if r.format.is_empty() {
            "json"
        } else {
            r.format.as_str()
        };
        let format =
            Format::from_name(name).ok_or_else(|| status(CatalogError::Format(name.into())))?;
        let catalog = if r.version.is_empty() {
            self.store.active().await.map_err(status)?
        } else {
            self.store.load(&r.version).await.map_err(status)?
        };
        Ok(Response::new(CatalogFile {
            format: name.to_ascii_lowercase(),
            content: format::write(&catalog, format).map_err(status)?,
        }))
    }
}
