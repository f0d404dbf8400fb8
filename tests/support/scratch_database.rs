//! A throwaway PostgreSQL database for tests and benches, on the server
//! named by `HERALD_TEST_DATABASE_URL`. Test code only: included by path
//! from the store's unit tests (`src/store/tests/mod.rs`), the integration
//! tests (`tests/integration/main.rs`) and `examples/bench_claims.rs`, each
//! of which has the store's `Target` in scope as `super::Target`.

// Each includer uses a part of it.
#![allow(dead_code)]

use std::str::FromStr;

use postgres::NoTls;

use super::Target;

/// A new, empty database for a test or a bench, on the PostgreSQL server
/// named by `HERALD_TEST_DATABASE_URL` (with `HERALD_TEST_DATABASE_PASSWORD`;
/// `scripts/pg-cluster.sh` starts one). Dropped with the value.
pub struct ScratchDatabase {
    /// `postgres://herald@127.0.0.1:PORT/NAME`, no password in it.
    pub url: String,
    pub password: String,
    /// The CA of the server's TLS certificate, when the cluster has one.
    pub ca: Option<std::path::PathBuf>,
    name: String,
    admin: String,
}

impl ScratchDatabase {
    /// `None` (saying SKIPPED on stderr) when no server is configured,
    /// except under `CI=true`, where that is a failure: CI starts one.
    pub fn new(what: &str) -> Option<ScratchDatabase> {
        let (Ok(admin), Ok(password)) = (
            std::env::var("HERALD_TEST_DATABASE_URL"),
            std::env::var("HERALD_TEST_DATABASE_PASSWORD"),
        ) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what}: HERALD_TEST_DATABASE_URL is not set, and under CI the PostgreSQL tests \
                 must run (.ci/run starts a cluster with scripts/pg-cluster.sh)"
            );
            eprintln!(
                "SKIPPED {what}: no PostgreSQL (start one with `scripts/pg-cluster.sh start DIR` \
                 and export HERALD_TEST_DATABASE_URL and HERALD_TEST_DATABASE_PASSWORD)"
            );
            return None;
        };
        let name = format!("herald_test_{:016x}", fastrand::u64(..));
        let mut c = postgres::Config::from_str(&admin)
            .expect("HERALD_TEST_DATABASE_URL is a PostgreSQL address")
            .password(&password)
            .connect(NoTls)
            .expect("the test PostgreSQL server answers");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("a test database can be made");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(ScratchDatabase {
            url: format!("{base}/{name}"),
            password,
            ca: std::env::var_os("HERALD_TEST_DATABASE_CA").map(Into::into),
            name,
            admin,
        })
    }

    /// The target for this database, as herald would reach it.
    pub fn target(&self) -> Target {
        Target::new(&self.url, Some(self.password.as_bytes()), None).expect("a valid address")
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, password, name) =
            (self.admin.clone(), self.password.clone(), self.name.clone());
        // On a thread of its own: a test may drop it inside a runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Config::from_str(&admin)
                .map(|mut c| {
                    c.password(&password);
                    c
                })
                .and_then(|c| c.connect(NoTls))
            {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}
