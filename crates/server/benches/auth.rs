//! What checking an API key costs a request: `ApiKeyService::authenticate` as the REST API
//! calls it, with the database the server uses (its last-use write happens once a minute per
//! key, so almost never here, as under load).
//!
//! `cargo bench -p insta-router --bench auth`; with `BENCH_POSTGRES_URL` (a server URL, a
//! fresh database is made and dropped) PostgreSQL is measured too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use insta_router::wiring::api_keys;
use insta_router_domain::KeyScope;
use insta_router_ports::HealthCheck;
use insta_router_storage::testing;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut databases = vec![("SQLite", testing::sqlite())];
    if let Ok(url) = std::env::var("BENCH_POSTGRES_URL") {
        databases.push(("PostgreSQL", runtime.block_on(testing::on_server(&url))));
    }
    for (name, database) in &databases {
        let db = runtime.block_on(database.connect());
        runtime.block_on(db.migrate_up()).unwrap();
        let keys = api_keys(&db);
        let made = runtime
            .block_on(keys.create(KeyScope::Admin, Some("bench")))
            .unwrap();
        let key = made.secret.expose().to_owned();
        runtime.block_on(keys.authenticate(&key)).unwrap();
        // The floor: any round trip to this database through the pool.
        c.bench_function(&format!("ping the database ({name})"), |b| {
            b.iter(|| runtime.block_on(db.ping()).unwrap());
        });
        c.bench_function(&format!("authenticate a valid key ({name})"), |b| {
            b.iter(|| runtime.block_on(keys.authenticate(&key)).unwrap());
        });
        let unknown = format!("irk_{}", "x".repeat(43));
        c.bench_function(&format!("refuse an unknown key ({name})"), |b| {
            b.iter(|| runtime.block_on(keys.authenticate(&unknown)).unwrap_err());
        });
        runtime.block_on(db.close()).unwrap();
    }
    c.bench_function("refuse a malformed key (no lookup)", |b| {
        let db = runtime.block_on(databases[0].1.connect());
        let keys = api_keys(&db);
        b.iter(|| {
            runtime
                .block_on(keys.authenticate("not-a-key"))
                .unwrap_err()
        });
    });
    // Each test database drops itself.
    drop(databases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
