//! Helpers for tests that talk to the real backends on 127.0.0.1. Each test gets its own
//! database, its own queue-name prefix and its own Redis key prefix.
//!
//! Override the addresses with `MINYI_TEST_DATABASE_URL`, `MINYI_TEST_AMQP_URL` and
//! `MINYI_TEST_REDIS_URL`.

use sqlx::Connection;
use uuid::Uuid;

/// The server-level URL tests create their databases on.
pub fn admin_database_url() -> String {
    std::env::var("MINYI_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

pub fn amqp_url() -> String {
    std::env::var("MINYI_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("MINYI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// RabbitMQ settings for a test: a prefix of its own, and queues that go away two minutes
/// after their last use (left-over test queues would pile up on the shared broker).
pub fn amqp_config() -> crate::bus::AmqpConfig {
    let mut config = crate::bus::AmqpConfig::new(&amqp_url(), &random_name());
    config.queue_expires = Some(std::time::Duration::from_secs(120));
    config
}

/// A short random name, e.g. `t3f9a1c2d`.
pub fn random_name() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Creates an empty database and returns its URL. Databases are named `minyi_test_*`;
/// `make clean-test-dbs` drops them.
pub async fn fresh_database() -> Result<String, sqlx::Error> {
    let admin = admin_database_url();
    let name = format!("minyi_test_{}", random_name());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
    Ok(format!("{server}/{name}{query}"))
}

/// A received, anonymous hotline ticket with `text`, for tests that write to a store directly.
pub fn ticket_record(
    text: &str,
    received_at: chrono::DateTime<chrono::Utc>,
) -> crate::store::TicketRecord {
    crate::store::TicketRecord {
        id: uuid::Uuid::now_v7(),
        tracking_number: String::new(),
        status: crate::petition::TicketStatus::Received,
        channel: crate::petition::Channel::Hotline,
        title: String::new(),
        text: text.to_owned(),
        anonymous: true,
        caller_name: None,
        caller_phone: None,
        caller_id_number: None,
        address: "光明街道".into(),
        latitude: None,
        longitude: None,
        event_time: None,
        attachment_urls: vec![],
        idempotency_key: None,
        received_at,
        received_by: "test".into(),
        follow_ups: vec![],
        routing: None,
        dispatch: None,
        version: 0,
    }
}
