//! The Postgres store's schema: replicas that start at the same moment on one database apply
//! the migrations once (sqlx holds an advisory lock while it migrates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use sqlx::Connection;
use switchyard_metering::store::postgres::PgStore;

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let url = pg::url();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move { PgStore::connect_in_schema(&url, &schema).await })
        })
        .collect();
    for start in starts {
        start
            .await
            .unwrap()
            .expect("every replica starts on the shared schema");
    }
    let applied: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {schema}._sqlx_migrations WHERE success"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        applied,
        i64::try_from(files).unwrap(),
        "each migration once"
    );
}
