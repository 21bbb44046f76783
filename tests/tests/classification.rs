//! Petitions flow from intake through classification: routed to the owner, sent to a
//! dispatcher when unsure or when the place is unknown, linked when they repeat an open ticket.

mod support;

use std::time::{Duration, Instant};

use minyi_catalog::model::Responsibility;
use minyi_core::auth::Role;
use minyi_core::petition::TicketStatus;
use minyi_proto::classification::SuggestRequest;
use minyi_proto::common::Location;
use minyi_proto::intake::{GetTicketRequest, SubmitPetitionRequest, Ticket};
use support::{Backend, INTAKE_AND_CLASSIFICATION, spawn_services};

async fn wait_routed(intake: &mut support::Intake, id: &str) -> Ticket {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = intake
            .get_ticket(GetTicketRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if t.routing.is_some() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "ticket {id} was never classified"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(intake: &mut support::Intake, text: &str, address: &str) -> Ticket {
    intake
        .submit_petition(SubmitPetitionRequest {
            channel: 1,
            text: text.into(),
            location: Some(Location {
                address: address.into(),
                point: None,
            }),
            ..SubmitPetitionRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

async fn pipeline(backend: Backend) {
    let app = spawn_services(backend, INTAKE_AND_CLASSIFICATION).await;
    let catalog = support::small_catalog(&tempfile::tempdir().unwrap().path().join("c"));
    let mut agent = app.intake(Some(Role::Agent)).await;

    // A clear functional petition with a known place: dispatched to the department.
    let functional = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .unwrap();
    let t = submit(
        &mut agent,
        &functional.phrasings.join("，"),
        "光明街道东周社区",
    )
    .await;
    let t = wait_routed(&mut agent, &t.id).await;
    let r = t.routing.clone().unwrap();
    let functional_routing = r.clone();
    assert_eq!(r.catalog_version, "v1");
    assert!(!r.model_version.is_empty());
    assert_eq!(r.suggestions.len().min(5), r.suggestions.len());
    if r.decision == "auto" {
        // Routed; in embedded mode the dispatch service may already have assigned it.
        assert!(
            [TicketStatus::Routed, TicketStatus::Dispatched]
                .map(TicketStatus::to_proto)
                .contains(&t.status)
        );
        assert_eq!(r.item_code, functional.code);
        let Responsibility::Functional { unit } = &functional.responsibility else {
            unreachable!()
        };
        assert_eq!(&r.lead_unit, unit);
    } else {
        assert_eq!(t.status, TicketStatus::NeedsDispatcher.to_proto());
    }

    // A territorial matter with no location at all: a dispatcher decides, never a guess.
    let territorial = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Territorial))
        .unwrap();
    let t = submit(&mut agent, &territorial.phrasings.join("，"), "").await;
    let t = wait_routed(&mut agent, &t.id).await;
    let r = t.routing.unwrap();
    if r.item_code == territorial.code {
        assert_eq!(r.decision, "needs_dispatcher");
        assert!(r.lead_unit.is_empty());
        assert_eq!(t.status, TicketStatus::NeedsDispatcher.to_proto());
    }

    // The same matter at the same place again: linked, not dispatched a second time.
    let text = format!("{}，已经好几天了", territorial.phrasings.join("，"));
    let first = submit(&mut agent, &text, "公明街道上村社区").await;
    let first = wait_routed(&mut agent, &first.id).await;
    if !first.routing.as_ref().unwrap().community.is_empty() {
        let again = submit(&mut agent, &format!("{text}！"), "公明街道上村社区").await;
        let again = wait_routed(&mut agent, &again.id).await;
        assert_eq!(again.status, TicketStatus::LinkedDuplicate.to_proto());
        assert_eq!(again.routing.unwrap().duplicate_of, first.id);
    }

    // Several reports of one matter arriving together: classification handles petitions side
    // by side, yet one stays the original and every other is linked to it.
    let other = catalog
        .items()
        .iter()
        .filter(|i| matches!(i.responsibility, Responsibility::Territorial))
        .nth(1)
        .unwrap();
    let text = format!("{}，一直没人管", other.phrasings.join("，"));
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..6 {
        let mut agent = agent.clone();
        let text = format!("{text}{}", "！".repeat(n));
        sent.spawn(async move { submit(&mut agent, &text, "公明街道上村社区").await.id });
    }
    let mut burst = Vec::new();
    while let Some(id) = sent.join_next().await {
        burst.push(wait_routed(&mut agent, &id.unwrap()).await);
    }
    if !burst[0].routing.as_ref().unwrap().community.is_empty() {
        let originals: Vec<&Ticket> = burst
            .iter()
            .filter(|t| t.status != TicketStatus::LinkedDuplicate.to_proto())
            .collect();
        assert_eq!(originals.len(), 1, "{burst:#?}");
        for t in &burst {
            if t.id != originals[0].id {
                assert_eq!(t.routing.as_ref().unwrap().duplicate_of, originals[0].id);
            }
        }
    }

    // Suggest while typing; hostile input is answered, not crashed on.
    let mut suggest = app.suggest().await;
    let s = suggest
        .suggest(SuggestRequest {
            text: functional.phrasings[0].clone(),
            location: None,
            k: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.suggestions.len(), 3);
    // For the same text and place Suggest says what the worker did: automatic, and to whom.
    let same = suggest
        .suggest(SuggestRequest {
            text: functional.phrasings.join("，"),
            location: Some(Location {
                address: "光明街道东周社区".into(),
                point: None,
            }),
            k: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.auto, functional_routing.decision == "auto");
    let expected_unit = if same.auto {
        functional_routing.lead_unit.as_str()
    } else {
        ""
    };
    assert_eq!(same.auto_unit, expected_unit);
    for text in [
        "😀".repeat(10),
        "x".repeat(200_000),
        "<script>alert(1)</script>".into(),
    ] {
        suggest
            .suggest(SuggestRequest {
                text,
                location: None,
                k: 5,
            })
            .await
            .unwrap();
    }
    let e = suggest
        .suggest(SuggestRequest {
            text: " ".into(),
            location: None,
            k: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn embedded_pipeline_routes_dispatches_and_links() {
    pipeline(Backend::Embedded).await;
}

#[tokio::test]
async fn production_pipeline_routes_dispatches_and_links() {
    pipeline(Backend::Production).await;
}

/// An operator activates another catalog version, then an arbitration ruling teaches a new
/// phrasing: the running classification services retrain and swap both in, no restart. Two
/// replicas with catalog directories of their own (two pods) follow the one catalog in the
/// database: the second never saw the first one's directory.
#[tokio::test]
async fn catalog_activation_and_rulings_reach_the_classifier_without_a_restart() {
    use minyi::app::Mode;
    use minyi_core::store::CatalogStore;
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    let catalog = support::small_catalog(&catalog_dir);
    let config = minyi::config::Config {
        catalog_dir: Some(catalog_dir.clone()),
        model_path: Some(dir.path().join("model.bin")),
        catalog_poll_secs: 1,
        ..support::production_config().await
    };
    let db = config.database_url.clone().unwrap();
    let services = Mode::Production(INTAKE_AND_CLASSIFICATION.to_vec());
    let app = support::spawn_with(config.clone(), services.clone(), None).await;
    // The second replica: an empty catalog directory and a model path of its own.
    let other_dir = tempfile::tempdir().unwrap();
    let other = minyi::config::Config {
        catalog_dir: Some(other_dir.path().join("catalog")),
        model_path: Some(other_dir.path().join("model.bin")),
        ..config
    };
    let replica = support::spawn_with(other, services, None).await;

    let novel = "变电箱里有只猫叫了一整夜，怎么也出不来";
    let mut clients = vec![app.suggest().await, replica.suggest().await];
    let mut before = Vec::new();
    for c in &mut clients {
        let s = support::suggest_until(c, novel, "first model", |_| true).await;
        assert_eq!(s.catalog_version, "v1", "the seeded catalog, not the demo");
        assert_eq!(s.suggestions.len(), 5);
        before.push(s);
    }

    // The catalog the first service seeded from its directory is in the database: another
    // version is imported there, and `minyi catalog activate` run as an operator would.
    let store = minyi_core::store::PgCatalogStore::connect(&db)
        .await
        .unwrap();
    let v2 = store
        .import(&support::with_one_more_phrasing(&catalog))
        .await
        .unwrap();
    let bin = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug/minyi");
    let out = tokio::process::Command::new(bin)
        .args(["catalog", "activate", &v2, "--database-url", &db])
        .env_remove("MINYI_CATALOG_DIR")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is active"));
    let mut after = Vec::new();
    for (c, b) in clients.iter_mut().zip(&before) {
        let s =
            support::suggest_until(c, novel, "the new version", |s| s.catalog_version == v2).await;
        assert_ne!(s.model_version, b.model_version, "retrained for {v2}");
        after.push(s);
    }

    // Rulings that file the novel phrasing under an item it was not suggested for.
    let item = catalog
        .items()
        .iter()
        .find(|i| i.code != after[0].suggestions[0].item_code)
        .unwrap();
    support::record_rulings(&store, novel, &item.code).await;
    for (c, a) in clients.iter_mut().zip(&after) {
        let s = support::suggest_until(c, novel, "the rulings", |s| {
            s.model_version != a.model_version
        })
        .await;
        assert_eq!(
            s.suggestions[0].item_code, item.code,
            "learned from the rulings"
        );
    }
    replica.stop().await;
    app.stop().await;
}

/// With a retraining interval (`retrain_min_secs`), new rulings wait for it: several polls
/// later the model is the same. A newly activated catalog version is trained for at once, with
/// the rulings recorded meanwhile.
#[tokio::test]
async fn rulings_wait_for_the_retraining_interval_and_an_activation_does_not() {
    use minyi_core::store::CatalogStore;
    let (app, catalog) =
        support::spawn_on_small_catalog(INTAKE_AND_CLASSIFICATION, |c| c.retrain_min_secs = 3600)
            .await;
    let db = app.config.database_url.clone().unwrap();
    let novel = "变电箱里有只猫叫了一整夜，怎么也出不来";
    let mut client = app.suggest().await;
    let first = support::suggest_until(&mut client, novel, "first model", |_| true).await;
    let store = minyi_core::store::PgCatalogStore::connect(&db)
        .await
        .unwrap();
    let item = catalog
        .items()
        .iter()
        .find(|i| i.code != first.suggestions[0].item_code)
        .unwrap();
    support::record_rulings(&store, novel, &item.code).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let held = support::suggest_until(&mut client, novel, "an answer", |_| true).await;
    assert_eq!(
        held.model_version, first.model_version,
        "retrained within the interval"
    );

    let v2 = store
        .import(&support::with_one_more_phrasing(&catalog))
        .await
        .unwrap();
    store.activate(&v2).await.unwrap();
    let s = support::suggest_until(&mut client, novel, "the new version", |s| {
        s.catalog_version == v2
    })
    .await;
    assert_eq!(
        s.suggestions[0].item_code, item.code,
        "the rulings learnt with the new version"
    );
    app.stop().await;
}

/// `CatalogService`: list, export, validate (every problem named), import, diff, activate
/// (admin only), on the classification process's catalog directory.
#[tokio::test]
async fn catalog_service_validates_imports_diffs_and_activates() {
    use minyi_proto::catalog::catalog_service_client::CatalogServiceClient;
    use minyi_proto::catalog::*;
    let app = spawn_services(Backend::Production, INTAKE_AND_CLASSIFICATION).await;
    let client = |role: Role| {
        let header: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", app.token(role)).parse().unwrap();
        let endpoint = format!("http://{}", app.grpc);
        async move {
            let channel = tonic::transport::Channel::from_shared(endpoint)
                .unwrap()
                .connect()
                .await
                .unwrap();
            CatalogServiceClient::with_interceptor(channel, support::Bearer(Some(header)))
        }
    };
    let mut admin = client(Role::Admin).await;
    let versions = admin
        .list_versions(ListVersionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1);
    assert!(versions[0].active && versions[0].version == "v1");
    let csv = admin
        .export(ExportRequest {
            version: String::new(),
            format: "csv".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(csv.content.starts_with("code,path,name,"));

    // One item's completion limit changed: valid, imported as v2, one change in the diff.
    let first_row = csv.content.lines().nth(1).unwrap();
    let edited_row = first_row.replacen(",normal,", ",urgent,", 1);
    assert_ne!(
        first_row, edited_row,
        "the fixture row has a grade to change"
    );
    let edited = CatalogFile {
        format: "csv".into(),
        content: csv.content.replacen(first_row, &edited_row, 1),
    };
    let ok = admin.validate(edited.clone()).await.unwrap().into_inner();
    assert!(ok.ok && ok.items > 0, "{ok:?}");
    // A broken file: every problem named with its line and field; import refuses it.
    let broken = CatalogFile {
        format: "csv".into(),
        content: csv.content.replacen(",normal,", ",sometimes,", 1),
    };
    let bad = admin.validate(broken.clone()).await.unwrap().into_inner();
    assert!(!bad.ok);
    assert!(
        bad.problems
            .iter()
            .any(|p| p.location == "line 2" && p.field == "grade"),
        "{bad:?}"
    );
    let e = admin
        .import(ImportRequest {
            file: Some(broken),
            activate: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let v2 = admin
        .import(ImportRequest {
            file: Some(edited),
            activate: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v2.version.as_str(), v2.active), ("v2", false));
    let d = admin
        .diff(DiffRequest {
            from: "v1".into(),
            to: "v2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(d.added.is_empty() && d.removed.is_empty());
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].fields, ["grade"]);

    // Only an admin activates; an unknown version is NOT_FOUND.
    let mut dispatcher = client(Role::Dispatcher).await;
    let e = dispatcher
        .activate(ActivateRequest {
            version: "v2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = admin
        .activate(ActivateRequest {
            version: "v9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let active = admin
        .activate(ActivateRequest {
            version: "2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active && active.version == "v2");
    let mut agent = client(Role::Agent).await;
    let e = agent
        .list_versions(ListVersionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    app.stop().await;
}

/// A catalog file beyond gRPC's usual 4 MiB message limit (the demo catalog with a long note
/// on every item, as clarifications add them: 7 MB of JSON) is imported and exported over
/// `CatalogService` by a client that raises its own limit.
#[tokio::test]
async fn catalog_service_carries_catalogs_beyond_the_default_message_size() {
    use minyi_proto::catalog::catalog_service_client::CatalogServiceClient;
    use minyi_proto::catalog::*;
    let app = spawn_services(Backend::Production, INTAKE_AND_CLASSIFICATION).await;
    let demo = minyi_catalog::Catalog::demo();
    let mut items = demo.items().to_vec();
    for item in &mut items {
        item.notes
            .push("仲裁澄清：".to_owned() + &"本事项由属地街道牵头、相关部门配合办理。".repeat(20));
    }
    let big = minyi_catalog::Catalog::new("big", items, demo.units().clone());
    let content = minyi_catalog::format::write(&big, minyi_catalog::format::Format::Json).unwrap();
    assert!(content.len() > 6 << 20, "{} bytes", content.len());
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header = format!("Bearer {}", app.token(Role::Admin))
        .parse()
        .unwrap();
    let mut admin = CatalogServiceClient::with_interceptor(channel, support::Bearer(Some(header)))
        .max_decoding_message_size(minyi::app::CATALOG_MESSAGE_LIMIT)
        .max_encoding_message_size(minyi::app::CATALOG_MESSAGE_LIMIT);
    let stored = admin
        .import(ImportRequest {
            file: Some(CatalogFile {
                format: "json".into(),
                content,
            }),
            activate: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.items as usize, big.len());
    let back = admin
        .export(ExportRequest {
            version: stored.version,
            format: "json".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(back.content.len() > 6 << 20, "{} bytes", back.content.len());
    app.stop().await;
}

/// An installation that kept its catalog and examples in a catalog directory moves to the
/// database: the first production process seeds the database with the directory's active
/// version and its examples, learns from them in its first model, and does not train again
/// for them (the examples it was trained with are noted beside the saved model).
#[tokio::test]
async fn a_catalog_directory_moves_into_the_database_with_its_examples() {
    use minyi::app::Mode;
    use minyi_core::store::CatalogStore;
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    let catalog = support::small_catalog(&catalog_dir);
    let local = minyi_catalog::CatalogDir::open(&catalog_dir).unwrap();
    let novel = "变电箱里有只猫叫了一整夜，怎么也出不来";
    let item = &catalog.items()[catalog.len() - 1];
    support::record_rulings(&local, novel, &item.code).await;
    let config = minyi::config::Config {
        catalog_dir: Some(catalog_dir),
        model_path: Some(dir.path().join("model.bin")),
        catalog_poll_secs: 1,
        ..support::production_config().await
    };
    let db = config.database_url.clone().unwrap();
    let app = support::spawn_with(
        config,
        Mode::Production(INTAKE_AND_CLASSIFICATION.to_vec()),
        Some(dir),
    )
    .await;
    let mut suggest = app.suggest().await;
    let first = support::suggest_until(&mut suggest, novel, "first model", |_| true).await;
    assert_eq!(first.catalog_version, "v1");
    assert_eq!(
        first.suggestions[0].item_code, item.code,
        "learned at start"
    );
    // Three polls later the same model is in force: nothing was retrained.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = support::suggest_until(&mut suggest, novel, "answer", |_| true).await;
    assert_eq!(later.model_version, first.model_version);
    // In the database now, for every replica.
    let store = minyi_core::store::PgCatalogStore::connect(&db)
        .await
        .unwrap();
    assert_eq!(store.examples().await.unwrap().len(), 3);
    assert_eq!(
        store.active().await.unwrap().content_hash(),
        catalog.content_hash()
    );
    app.stop().await;
}
