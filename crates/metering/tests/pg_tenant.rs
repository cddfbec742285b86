//! The Postgres store's tenants, keys and prepaid credit: the SQLite store's tests
//! (`sqlite_store.rs`) ported, the same script run on both stores with identical results, and
//! two replicas (two `PgStore`s on one schema) writing at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use sqlx::{Connection, PgConnection};
use switchyard_metering::model::{ApiKey, LimitOverrides, Scopes, Tenant};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::StoreError;

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        tier: "pro".into(),
        overrides: LimitOverrides::default(),
        prepaid: false,
        created_at: 1_700_000_000_000,
        content_logging: Default::default(),
    }
}

fn key(id: &str, tenant_id: &str, hash_byte: u8) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant_id: tenant_id.into(),
        name: format!("{id} name"),
        prefix: "sy-abcd".into(),
        hash: [hash_byte; 32],
        scopes: Scopes {
            models: vec!["llama-3.1-8b".into()],
            endpoints: vec!["chat".into()],
        },
        expires_at: Some(1_900_000_000_000),
        revoked_at: None,
        created_at: 1_700_000_000_000,
        limits: LimitOverrides {
            requests_per_minute: Some(10),
            ..Default::default()
        },
    }
}

/// Asserts that `r` failed with exactly `kind(message)`, as the SQLite store fails.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T, StoreError>, kind: &str, message: &str) {
    assert_eq!(format!("{r:?}"), format!("Err({kind}({message:?}))"));
}

fn new_schema() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// A store on `schema`: called twice with one name, two replicas on one database.
async fn store_in(schema: &str) -> PgStore {
    PgStore::connect_in_schema(&pg::url(), schema)
        .await
        .unwrap()
}

/// A plain connection to `schema`, for what the tenant store does not write (usage rows).
async fn raw(schema: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&pg::url()).await.unwrap();
    sqlx::query(&format!("SET search_path TO {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// A usage row costing `cost`, written as the ledger would (which is ported separately).
async fn insert_usage(conn: &mut PgConnection, request_id: &str, tenant_id: &str, cost: i64) {
    sqlx::query(
        "INSERT INTO usage (request_id, started_at_ms, tenant_id, key_id, model, endpoint, \
             stream, worker, provider, region, prompt_tokens, completion_tokens, \
             usage_estimated, total_ms, status, http_status, cost_nanos, cogs_nanos) \
         VALUES ($1, 1769904000000, $2, 'k', 'm', 'chat', TRUE, 'w1', 'p', 'eu', 10, 10, \
             FALSE, 900, 'completed', 200, $3, 1)",
    )
    .bind(request_id)
    .bind(tenant_id)
    .bind(cost)
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn tenants_round_trip() {
    let store = pg::fresh().await;

    let mut acme = tenant("acme");
    acme.overrides.max_tokens = Some(2048);
    acme.overrides.models = Some(vec!["llama-3.1-8b".into()]);
    store.create_tenant(&acme).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(store.get_tenant("nobody").await.unwrap(), None);
    let ids: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    let dup = store.create_tenant(&tenant("acme")).await;
    assert_err(dup, "Conflict", "tenant acme");

    // Only the given fields change.
    let t = store
        .update_tenant("acme", Some("business"), None, None, None)
        .await
        .unwrap();
    assert_eq!(t.tier, "business");
    assert_eq!(t.overrides, acme.overrides);
    assert!(!t.prepaid);

    let over = LimitOverrides {
        monthly_tokens: Some(5_000_000),
        price_input_per_million: Some(1.25),
        ..Default::default()
    };
    let t = store
        .update_tenant("acme", None, Some(&over), Some(true), None)
        .await
        .unwrap();
    assert_eq!(t.tier, "business");
    assert_eq!(t.overrides, over);
    assert!(t.prepaid);
    assert_eq!(t.created_at, acme.created_at);
    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(t));

    let missing = store
        .update_tenant("nobody", Some("pro"), None, None, None)
        .await;
    assert_err(missing, "NotFound", "tenant nobody");
}

#[tokio::test]
async fn keys_round_trip() {
    let store = pg::fresh().await;
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    let k1 = key("k1", "acme", 1);
    let k2 = key("k2", "acme", 2);
    let k3 = key("k3", "beta", 3);
    for k in [&k1, &k2, &k3] {
        store.create_key(k).await.unwrap();
    }
    assert_eq!(store.get_key("k1").await.unwrap(), Some(k1.clone()));
    assert_eq!(store.get_key("nope").await.unwrap(), None);
    assert_eq!(
        store.list_keys(Some("acme")).await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);
    assert!(store.list_keys(Some("nobody")).await.unwrap().is_empty());

    // Same id, or same secret under another id: both conflicts, neither naming the hash.
    let dup_id = store.create_key(&key("k1", "acme", 9)).await;
    assert_err(dup_id, "Conflict", "key k1 (or a key with the same secret)");
    let dup_hash = store.create_key(&key("k9", "acme", 1)).await;
    assert_err(
        dup_hash,
        "Conflict",
        "key k9 (or a key with the same secret)",
    );
    let no_tenant = store.create_key(&key("k8", "nobody", 8)).await;
    assert_err(no_tenant, "NotFound", "tenant nobody");
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3, "none added");

    store.revoke_key("k1", 1_800_000_000_000).await.unwrap();
    // A second revocation keeps the first time.
    store.revoke_key("k1", 1_850_000_000_000).await.unwrap();
    let revoked = store.get_key("k1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(1_800_000_000_000));
    assert_eq!(revoked.hash, k1.hash);
    let missing = store.revoke_key("nope", 1).await;
    assert_err(missing, "NotFound", "key nope");

    // The hash is in the struct but never serialized.
    let json = serde_json::to_string(&store.list_keys(None).await.unwrap()).unwrap();
    assert!(!json.contains("hash"), "{json}");
}

#[tokio::test]
async fn balance_is_credits_minus_costs() {
    let schema = new_schema();
    let store = store_in(&schema).await;
    let mut conn = raw(&schema).await;
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    assert_eq!(store.credit_balance("acme").await.unwrap(), 0);
    store
        .add_credit("acme", 10_000_000_000, "top-up")
        .await
        .unwrap();
    store
        .add_credit("acme", 2_500_000_001, "bonus")
        .await
        .unwrap();
    store
        .add_credit("acme", -1, "rounding correction")
        .await
        .unwrap();
    insert_usage(&mut conn, "r1", "acme", 3_200_001).await;
    insert_usage(&mut conn, "r2", "acme", 1_990).await;
    insert_usage(&mut conn, "r3", "beta", 777).await;

    assert_eq!(
        store.credit_balance("acme").await.unwrap(),
        10_000_000_000 + 2_500_000_001 - 1 - 3_200_001 - 1_990
    );
    // No credits: zero minus what was spent.
    assert_eq!(store.credit_balance("beta").await.unwrap(), -777);

    // Top-ups are stored as given, with their note and a current timestamp.
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT amount_nanos, note, created_at FROM credits WHERE tenant_id = 'acme' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let got: Vec<_> = rows.iter().map(|(a, n, _)| (*a, n.as_str())).collect();
    assert_eq!(
        got,
        [
            (10_000_000_000, "top-up"),
            (2_500_000_001, "bonus"),
            (-1, "rounding correction")
        ]
    );
    assert!(rows.iter().all(|r| r.2 > 1_700_000_000_000), "{rows:?}");

    let unknown = store.credit_balance("nobody").await;
    assert_err(unknown, "NotFound", "tenant nobody");
    let unknown = store.add_credit("nobody", 5, "x").await;
    assert_err(unknown, "NotFound", "tenant nobody");
}

/// `SUM(bigint)` is NUMERIC in Postgres: a sum past i64 is an error of the store's data, not
/// a wrapped number, nor "invalid input".
#[tokio::test]
async fn a_balance_beyond_i64_is_a_database_error() {
    let schema = new_schema();
    let store = store_in(&schema).await;
    let mut conn = raw(&schema).await;
    store.create_tenant(&tenant("rich")).await.unwrap();
    store.add_credit("rich", i64::MAX, "a").await.unwrap();
    assert_eq!(store.credit_balance("rich").await.unwrap(), i64::MAX);
    store.add_credit("rich", 1, "b").await.unwrap();
    let err = store.credit_balance("rich").await;
    assert_err(err, "Database", "balance of rich overflows i64");

    // Each sum fits, their difference does not.
    store.create_tenant(&tenant("odd")).await.unwrap();
    store.add_credit("odd", i64::MAX, "a").await.unwrap();
    insert_usage(&mut conn, "refund", "odd", -1).await;
    let err = store.credit_balance("odd").await;
    assert_err(err, "Database", "balance of odd overflows i64");
}

/// What a caller sees from every method, as text: results and error messages alike.
async fn script(s: &dyn TenantStore) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! log {
        ($e:expr) => {
            out.push(format!("{:?}", $e))
        };
    }
    // Ids whose order differs between byte order and a locale's (punctuation, case).
    for id in ["b", "a-b", "ab", "a_b", "B", "a"] {
        log!(s.create_tenant(&tenant(id)).await);
    }
    log!(s.create_tenant(&tenant("a")).await);
    log!(s.list_tenants().await);
    log!(s.get_tenant("a-b").await);
    log!(s.get_tenant("zz").await);
    let over = LimitOverrides {
        tokens_per_minute: Some(9),
        ..Default::default()
    };
    log!(s.update_tenant("ab", None, Some(&over), None, None).await);
    log!(
        s.update_tenant("ab", Some("free"), None, Some(true), None)
            .await
    );
    log!(s.update_tenant("zz", None, None, None, None).await);
    for (i, (id, t)) in [
        ("k-b", "a"),
        ("kB", "a"),
        ("k_b", "a"),
        ("k", "B"),
        ("kb", "a"),
    ]
    .into_iter()
    .enumerate()
    {
        log!(s.create_key(&key(id, t, u8::try_from(i).unwrap())).await);
    }
    log!(s.create_key(&key("k", "a", 200)).await);
    log!(s.create_key(&key("new", "a", 0)).await);
    log!(s.create_key(&key("new", "zz", 201)).await);
    log!(s.list_keys(None).await);
    log!(s.list_keys(Some("a")).await);
    log!(s.revoke_key("kB", 5).await);
    log!(s.revoke_key("kB", 3).await);
    log!(s.revoke_key("zz", 3).await);
    log!(s.get_key("kB").await);
    log!(s.add_credit("a", 1_000, "x").await);
    log!(s.add_credit("a", -1, "y").await);
    log!(s.add_credit("zz", 1, "z").await);
    log!(s.credit_balance("zz").await);
    log!(s.credit_balance("a").await);
    log!(s.credit_balance("B").await);
    out
}

#[tokio::test]
async fn the_same_calls_give_the_same_results_as_on_sqlite() {
    let sqlite = SqliteStore::in_memory().await.unwrap();
    let want = script(&sqlite).await;
    let got = script(&pg::fresh().await).await;
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "call {i}");
    }
    // The script's listing really is in byte order ("B" before "a"), and the balance real.
    let at = |id: &str| want[7].find(&format!("id: {id:?}")).unwrap();
    assert!(at("B") < at("a") && at("a-b") < at("a_b") && at("a_b") < at("ab"));
    assert_eq!(want[want.len() - 2], "Ok(999)");
}

/// The SQLite store's restart test, for tenants: a new connection (a restarted replica)
/// finds everything.
#[tokio::test]
async fn everything_survives_a_reconnect() {
    let schema = new_schema();
    let mut k = key("k1", "acme", 7);
    {
        let store = store_in(&schema).await;
        store.create_tenant(&tenant("acme")).await.unwrap();
        store.create_key(&k).await.unwrap();
        store
            .add_credit("acme", 123_456_789, "top-up")
            .await
            .unwrap();
        store.revoke_key("k1", 42).await.unwrap();
        // Dropped without `close`, as a killed process would leave it.
    }
    k.revoked_at = Some(42);

    let store = store_in(&schema).await;
    assert_eq!(
        store.get_tenant("acme").await.unwrap(),
        Some(tenant("acme"))
    );
    assert_eq!(store.get_key("k1").await.unwrap(), Some(k));
    assert_eq!(store.credit_balance("acme").await.unwrap(), 123_456_789);
}

/// Two replicas on one database: what one writes the other reads, and writes at the same
/// moment from both lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_tenants_keys_and_credit() {
    let schema = new_schema();
    let a = store_in(&schema).await;
    let b = store_in(&schema).await;

    a.create_tenant(&tenant("acme")).await.unwrap();
    let k = key("k1", "acme", 1);
    a.create_key(&k).await.unwrap();
    assert_eq!(b.get_key("k1").await.unwrap(), Some(k.clone()));
    assert_eq!(b.list_keys(Some("acme")).await.unwrap(), vec![k.clone()]);
    b.revoke_key("k1", 77).await.unwrap();
    assert_eq!(a.get_key("k1").await.unwrap().unwrap().revoked_at, Some(77));
    // The secret is unique across replicas too.
    let dup = b.create_key(&key("k2", "acme", 1)).await;
    assert_err(dup, "Conflict", "key k2 (or a key with the same secret)");

    // 200 top-ups at once, half through each replica, each a distinct amount.
    let mut tasks = Vec::new();
    for i in 0..200_i64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.add_credit("acme", 1_000_000 + i, &format!("top-up {i}"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let want: i64 = (0..200).map(|i| 1_000_000 + i).sum();
    assert_eq!(a.credit_balance("acme").await.unwrap(), want);
    assert_eq!(b.credit_balance("acme").await.unwrap(), want);

    // Both replicas create the same tenant at once: one wins, the other is told it exists.
    let race = tenant("race");
    let (x, y) = tokio::join!(a.create_tenant(&race), b.create_tenant(&race));
    let mut results = [format!("{x:?}"), format!("{y:?}")];
    results.sort();
    assert_eq!(results, [r#"Err(Conflict("tenant race"))"#, "Ok(())"]);

    // One replica changes the tier while the other changes prepaid and the overrides: a
    // read-modify-write would let either overwrite the other's field with a stale value.
    let rounds = 100_i64;
    let (ra, rb) = (a.clone(), b.clone());
    let tiers = tokio::spawn(async move {
        for i in 0..rounds {
            let tier = format!("tier-{i}");
            ra.update_tenant("acme", Some(&tier), None, None, None)
                .await
                .unwrap();
        }
    });
    let others = tokio::spawn(async move {
        for i in 0..rounds {
            let over = LimitOverrides {
                max_concurrent: Some(u32::try_from(i).unwrap()),
                ..Default::default()
            };
            rb.update_tenant("acme", None, Some(&over), Some(i % 2 == 0), None)
                .await
                .unwrap();
        }
    });
    tiers.await.unwrap();
    others.await.unwrap();
    let t = a.get_tenant("acme").await.unwrap().unwrap();
    assert_eq!(t.tier, format!("tier-{}", rounds - 1));
    assert_eq!(
        t.overrides.max_concurrent,
        Some(u32::try_from(rounds - 1).unwrap())
    );
    assert_eq!(t.prepaid, (rounds - 1) % 2 == 0);
    assert_eq!(b.get_tenant("acme").await.unwrap(), Some(t));
}
