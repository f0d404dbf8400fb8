//! The PostgreSQL store's own rules: claims between senders, leases,
//! its schema upgrades, TLS and the shared rate.

use super::*;
use crate::config::Rate;
use crate::store::tests::ScratchDatabase;
use crate::store::*;

fn campaign(s: &mut Postgres, n: usize) {
    s.upsert_campaign("c", "post.md", "h", &[]).unwrap();
    let mut i = s.import("c").unwrap();
    for k in 0..n {
        i.add(&format!("r{k}@x.org"), k as i64 + 2, &[]).unwrap();
    }
    i.commit().unwrap();
}

fn mark(s: &mut Postgres, seqs: &[i64], state: State) -> Result<()> {
    let u: Vec<Update> = seqs
        .iter()
        .map(|&seq| Update {
            seq,
            state,
            reply: None,
            attempts: 0,
            suppress: None,
            relay: None,
        })
        .collect();
    s.apply("c", &u)
}

fn seqs(rows: &[Row]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

#[test]
fn two_senders_claim_disjoint_recipients_and_a_dead_ones_pending_claims_pass_on() {
    let Some(db) = ScratchDatabase::new("two_senders_claim_disjoint_recipients") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let mut b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 10);
    let lock_a = a.lock("c").unwrap().unwrap();
    let _lock_b = b.lock("c").unwrap().unwrap();
    let first = a.queue("c", 0, 4, false).unwrap();
    let second = b.queue("c", 0, 100, false).unwrap();
    assert_eq!(seqs(&first), [1, 2, 3, 4]);
    assert_eq!(seqs(&second), [5, 6, 7, 8, 9, 10]);
    // A takes 1 and 2 in flight; 3 and 4 are claimed but untouched.
    mark(&mut a, &[1, 2], State::Sending).unwrap();
    // B may not mark what A holds.
    let e = mark(&mut b, &[3], State::Sending).unwrap_err();
    assert!(e.fault.to_string().contains("lost its claim"), "{e}");
    assert_eq!(
        a.counts("c").unwrap().unknown,
        2,
        "nothing of B's call stayed"
    );
    // While A lives, its in-flight ones are not B's, even with
    // --resend-unknown.
    assert_eq!(
        seqs(&b.queue("c", 0, 100, true).unwrap()),
        [5, 6, 7, 8, 9, 10]
    );
    // A ends (or dies and its heartbeat stops): its unused claims pass
    // to B, its in-flight ones stay unknown unless --resend-unknown.
    drop(lock_a);
    let rest = b.queue("c", 0, 100, false).unwrap();
    assert_eq!(seqs(&rest), [3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(
        seqs(&b.queue("c", 0, 100, true).unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    mark(&mut b, &[3], State::Sending).unwrap();
}

#[test]
fn a_dead_senders_people_are_picked_up_by_a_sender_already_past_them() {
    let Some(db) = ScratchDatabase::new("a_dead_senders_people_are_picked_up") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 6);
    let la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    assert_eq!(seqs(&a.queue("c", 0, 2, false).unwrap()), [1, 2]);
    assert_eq!(seqs(&b.queue("c", 0, 2, false).unwrap()), [3, 4]);
    // A goes away with 1 and 2 unsent; B, whose run is past them,
    // still gets them, and never its own 3 and 4 a second time.
    drop(la);
    assert_eq!(seqs(&b.queue("c", 4, 10, false).unwrap()), [1, 2, 5, 6]);
    assert!(b.queue("c", 6, 10, false).unwrap().is_empty());
}

#[test]
fn a_sender_not_heard_of_for_the_lease_loses_its_claims() {
    let Some(db) = ScratchDatabase::new("a_sender_not_heard_of_loses_its_claims") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 3);
    let _la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    assert_eq!(a.queue("c", 0, 10, false).unwrap().len(), 3);
    assert!(b.queue("c", 0, 10, false).unwrap().is_empty());
    // A's heartbeat is older than the lease (a host cut off, a frozen VM).
    a.client()
        .execute(
            "UPDATE sender SET heartbeat = clock_timestamp() - interval '1 hour' WHERE id = $1",
            &[&a.sender],
        )
        .unwrap();
    assert_eq!(seqs(&b.queue("c", 0, 10, false).unwrap()), [1, 2, 3]);
    // A comes back and must not mail them.
    let e = mark(&mut a, &[1], State::Sending).unwrap_err();
    assert!(e.fault.to_string().contains("lost its claim"), "{e}");
}

/// Takes `s` for dead: its sender row is gone, as when a sender restarted
/// on its host finds its process gone (no heartbeat brings it back).
fn dies(s: &Postgres) {
    s.client()
        .execute("DELETE FROM sender WHERE id = $1", &[&s.sender])
        .unwrap();
}

/// A run takes over a dead sender's people, a whole batch of them before
/// its place in the queue, while its own next ones still wait for a
/// connection (claimed, not yet `sending`). Its next batch starts past
/// what it had, not past the dead sender's people: each recipient is
/// handed out once. (Asked from the last row of the takeover, the store
/// hands back the run's own waiting ones, and each is mailed twice.)
#[test]
fn a_run_that_takes_over_a_dead_senders_people_is_never_handed_its_own_twice() {
    let Some(db) = ScratchDatabase::new("a_run_is_never_handed_its_own_twice") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let mut b = Postgres::open(&db.target()).unwrap();
    let dead = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 16);
    let _la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    let _ld = dead.lock("c").unwrap().unwrap();
    let (mut at_a, mut at_b, mut at_dead) =
        (QueuePlace::new(), QueuePlace::new(), QueuePlace::new());
    let mut to_a = Vec::new();
    let mut to_b = Vec::new();
    let next = |s: &Postgres, at: &mut QueuePlace, to: &mut Vec<i64>| {
        let got = seqs(&at.next(s, "c", 4, false).unwrap());
        to.extend(&got);
        got
    };
    assert_eq!(next(&dead, &mut at_dead, &mut Vec::new()), [1, 2, 3, 4]);
    assert_eq!(next(&a, &mut at_a, &mut to_a), [5, 6, 7, 8]);
    assert_eq!(next(&b, &mut at_b, &mut to_b), [9, 10, 11, 12]);
    // A's connections took 5 and 6; 7 and 8 wait. B's all went.
    mark(&mut a, &[5, 6], State::Sending).unwrap();
    mark(&mut b, &[9, 10, 11, 12], State::Sending).unwrap();
    dies(&dead);
    assert_eq!(next(&a, &mut at_a, &mut to_a), [1, 2, 3, 4]);
    assert_eq!(next(&b, &mut at_b, &mut to_b), [13, 14, 15, 16]);
    assert_eq!(next(&a, &mut at_a, &mut to_a), Vec::<i64>::new());
    assert_eq!(next(&b, &mut at_b, &mut to_b), Vec::<i64>::new());
    let mut all: Vec<i64> = to_a.iter().chain(&to_b).copied().collect();
    all.sort();
    assert_eq!(
        all,
        (1..=16).collect::<Vec<_>>(),
        "A had {to_a:?}, B {to_b:?}"
    );
    // And A may mail all it was handed: nobody else holds them.
    mark(&mut a, &to_a, State::Sending).unwrap();
}

/// A sender cut off for longer than the lease comes back after the one
/// that took its recipient over has mailed them. The taker's final mark
/// let the claim go; the latecomer still may not mark them `sending`.
#[test]
fn a_sender_back_after_the_lease_cannot_mark_whom_the_taker_mailed() {
    let Some(db) = ScratchDatabase::new("a_sender_back_cannot_mark_whom_the_taker_mailed") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let mut b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 2);
    let _la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    assert_eq!(seqs(&a.queue("c", 0, 10, false).unwrap()), [1, 2]);
    dies(&a);
    assert_eq!(seqs(&b.queue("c", 0, 10, false).unwrap()), [1, 2]);
    mark(&mut b, &[1], State::Sending).unwrap();
    mark(&mut b, &[1], State::Sent).unwrap();
    // A comes back: neither the one B mailed nor the one B holds is A's.
    for seq in [1, 2] {
        let e = mark(&mut a, &[seq], State::Sending).unwrap_err();
        assert!(e.fault.to_string().contains("lost its claim"), "{seq}: {e}");
    }
    let c = b.counts("c").unwrap();
    assert_eq!((c.sent, c.unknown, c.pending), (1, 0, 1), "{c:?}");
}

/// A second sender starts with a newer list while the first holds claims.
/// Whom the first holds (and may be mailing this moment) stays on; the
/// others no longer listed are removed; someone unsubscribed since is
/// skipped, and the holder may not mark them `sending` any more.
#[test]
fn an_import_keeps_whom_a_living_sender_holds_and_its_skips_stop_their_mail() {
    let Some(db) = ScratchDatabase::new("an_import_keeps_whom_a_living_sender_holds") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let mut b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 4);
    let _la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    assert_eq!(seqs(&a.queue("c", 0, 2, false).unwrap()), [1, 2]);
    // B's list: r1 unsubscribed since, r3 still there; r0 and r2 gone.
    let mut i = b.import("c").unwrap();
    i.add("r1@x.org", 2, &[]).unwrap();
    i.skip("r1@x.org", "unsubscribed").unwrap();
    i.add("r3@x.org", 3, &[]).unwrap();
    assert_eq!(
        i.commit().unwrap(),
        1,
        "only r2, whom nobody holds, is removed"
    );
    mark(&mut a, &[1], State::Sending).unwrap();
    let e = mark(&mut a, &[2], State::Sending).unwrap_err();
    assert!(e.fault.to_string().contains("lost its claim"), "{e}");
    let c = b.counts("c").unwrap();
    assert_eq!(
        (c.unknown, c.skipped, c.removed, c.pending),
        (1, 1, 1, 1),
        "{c:?}"
    );
}

/// Those whose `waiting` (the claim's index) disagrees with their state:
/// `waiting` is kept by herald's statements since version 8, and someone
/// waiting left out of the index would never be mailed.
fn out_of_step(s: &Postgres) -> Vec<(i64, String, bool)> {
    s.client()
        .query(
            &format!(
                "SELECT seq, state, waiting FROM recipient
                 WHERE waiting <> (state IN ({})) ORDER BY seq",
                rules::sql(rules::queued(true))
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn every_change_of_state_keeps_the_queue_index_in_step() {
    let Some(db) = ScratchDatabase::new("every_change_of_state_keeps_the_queue_index_in_step")
    else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 8);
    assert_eq!(out_of_step(&a), []);
    let lock = a.lock("c").unwrap().unwrap();
    assert_eq!(a.queue("c", 0, 100, false).unwrap().len(), 8);
    mark(&mut a, &[1, 2, 3, 4], State::Sending).unwrap();
    mark(&mut a, &[1], State::Sent).unwrap();
    mark(&mut a, &[2], State::Deferred).unwrap();
    mark(&mut a, &[3], State::Failed).unwrap();
    assert_eq!(out_of_step(&a), []);
    drop(lock);
    // Listed again without r7 (removed), r6 skipped after its add (the
    // chunk's skips), r5 skipped without one (a skip of its own).
    let mut i = a.import("c").unwrap();
    for k in [1, 2, 3, 4, 6] {
        i.add(&format!("r{k}@x.org"), k + 2, &[]).unwrap();
    }
    i.skip("r6@x.org", "unsubscribed").unwrap();
    i.skip("r5@x.org", "unsubscribed").unwrap();
    i.commit().unwrap();
    let states = |s: &Postgres| -> Vec<String> {
        s.client()
            .query("SELECT state FROM recipient ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(
        states(&a),
        [
            "sent", "deferred", "failed", "sending", "pending", "skipped", "skipped", "removed"
        ]
    );
    assert_eq!(out_of_step(&a), []);
    // Listed again, everyone: the removed and skipped are pending again
    // and may be claimed.
    let mut i = a.import("c").unwrap();
    for k in 0..8 {
        i.add(&format!("r{k}@x.org"), k + 2, &[]).unwrap();
    }
    i.commit().unwrap();
    assert_eq!(out_of_step(&a), []);
    let _lock = a.lock("c").unwrap().unwrap();
    assert_eq!(seqs(&a.queue("c", 0, 100, false).unwrap()), [2, 5, 6, 7, 8]);
}

/// A row whose `waiting` went out of step with its state (an older herald
/// importing while a newer one upgraded the database: its statements did
/// not keep the column) is mended by the next import of the list, which
/// writes every listed row: the pending one left out of the queue is
/// mailed, the skipped one kept in it is not.
#[test]
fn an_import_mends_a_queue_out_of_step() {
    let Some(db) = ScratchDatabase::new("an_import_mends_a_queue_out_of_step") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 3);
    let mut i = a.import("c").unwrap();
    for k in 0..3 {
        i.add(&format!("r{k}@x.org"), k + 2, &[]).unwrap();
    }
    i.skip("r2@x.org", "unsubscribed").unwrap();
    i.commit().unwrap();
    a.client()
        .batch_execute(
            "UPDATE recipient SET waiting = FALSE WHERE seq = 1;
             UPDATE recipient SET waiting = TRUE WHERE seq = 3;",
        )
        .unwrap();
    assert_eq!(out_of_step(&a).len(), 2);
    let mut i = a.import("c").unwrap();
    for k in 0..2 {
        i.add(&format!("r{k}@x.org"), k + 2, &[]).unwrap();
    }
    i.add("r2@x.org", 4, &[]).unwrap();
    i.skip("r2@x.org", "unsubscribed").unwrap();
    i.commit().unwrap();
    assert_eq!(out_of_step(&a), []);
    let _lock = a.lock("c").unwrap().unwrap();
    assert_eq!(seqs(&a.queue("c", 0, 100, false).unwrap()), [1, 2]);
}

/// Version 2 kept one row per address; version 3 keeps each as an
/// event and records the later ones beside it.
#[test]
fn a_version_2_suppression_list_becomes_events() {
    let Some(db) = ScratchDatabase::new("a_version_2_suppression_list_becomes_events") else {
        return;
    };
    {
        let s = Postgres::open(&db.target()).unwrap();
        // Back to version 2's table, with a row in it.
        s.client()
            .batch_execute(
                "DROP INDEX suppression_once;
                 ALTER TABLE suppression DROP COLUMN id;
                 ALTER TABLE suppression ADD PRIMARY KEY (email_key);
                 INSERT INTO suppression VALUES ('ana@x.org', 'unsubscribed', '2026-01-01T00:00:00Z', 'one-click', 'c1');
                 UPDATE herald_schema SET version = 2;",
            )
            .unwrap();
    }
    let mut s = Postgres::open(&db.target()).unwrap();
    let events = s.suppression_events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source, Source::OneClick);
    s.suppress(&[Suppressed {
        email: "ana@x.org".into(),
        reason: "abuse".into(),
        source: Source::Complaint,
        campaign: Some("c1".into()),
        added_at: "2026-01-03T00:00:00Z".into(),
    }])
    .unwrap();
    assert_eq!(s.suppression_events().unwrap().len(), 2);
    assert!(s.unsuppress("ana@x.org", &[Source::OneClick]).unwrap());
    assert!(s.is_suppressed("ana@x.org").unwrap());
}

/// Everything of a database's schema that herald made: relations and
/// their storage, columns in order with types, defaults and generation,
/// indexes, constraints, functions' source and settings, triggers,
/// sequences, and the version recorded.
fn schema_of(db: &ScratchDatabase) -> Vec<String> {
    let mut c = db.target().connect().unwrap();
    c.query(
        "SELECT kind || ' ' || name || ': ' || def FROM (
            SELECT 'relation' AS kind, c.relname::TEXT AS name,
               c.relkind::TEXT || ' ' || c.relpersistence::TEXT || ' '
               || COALESCE(array_to_string(c.reloptions, ','), '') AS def
            FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
            UNION ALL
            SELECT 'column', c.relname || '.' || a.attname,
               a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || ' not null ' || a.attnotnull
               || ' generated ' || a.attgenerated::TEXT || ' default ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
               || ' collation ' || COALESCE(k.collname::TEXT, '')
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            LEFT JOIN pg_collation k ON k.oid = a.attcollation
            WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'index', c.relname, pg_get_indexdef(c.oid)
            FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'i'
            UNION ALL
            SELECT 'constraint', r.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
            FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid
            WHERE k.connamespace = current_schema()::regnamespace
            UNION ALL
            SELECT 'function', p.oid::regprocedure::TEXT, pg_get_functiondef(p.oid)
            FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
            UNION ALL
            SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
            UNION ALL
            SELECT 'sequence', s.sequencename, s.data_type::TEXT || ' ' || s.start_value || ' ' || s.increment_by
            FROM pg_sequences s WHERE s.schemaname = current_schema()
            UNION ALL
            SELECT 'version', '', string_agg(version::TEXT, ',') FROM herald_schema
         ) x ORDER BY 1",
        &[],
    )
    .unwrap()
    .into_iter()
    .map(|r| r.get(0))
    .collect()
}

/// A new database gets the latest schema in one step; one a herald of
/// version 1 made is brought through every version. The two must end the
/// same, or the one-step schema has drifted from the upgrades.
#[test]
fn a_new_database_and_one_upgraded_from_version_1_have_the_same_schema() {
    let (Some(new), Some(old)) = (
        ScratchDatabase::new("a_new_database_has_the_upgraded_schema (new)"),
        ScratchDatabase::new("a_new_database_has_the_upgraded_schema (old)"),
    ) else {
        return;
    };
    drop(Postgres::open(&new.target()).unwrap());
    {
        // Version 1's tables, and its `herald_apply` (version 2 replaced it).
        let mut c = old.target().connect().unwrap();
        let mut tx = c.transaction().unwrap();
        schema::tables_v1(&mut tx).unwrap();
        tx.batch_execute(
            "CREATE TABLE herald_schema (version INTEGER NOT NULL);
             INSERT INTO herald_schema VALUES (1);
             CREATE FUNCTION herald_apply(TEXT, TEXT, BIGINT[], TEXT[], TEXT[], BIGINT[], TEXT, BIGINT)
             RETURNS BIGINT LANGUAGE sql AS 'SELECT 0::BIGINT';",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    drop(Postgres::open(&old.target()).unwrap());
    let (made, upgraded) = (schema_of(&new), schema_of(&old));
    assert!(
        made.iter().any(|l| l.starts_with("function herald_claim(")),
        "{made:#?}"
    );
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|l| !b.contains(l)).cloned().collect()
    };
    assert_eq!(
        (only(&made, &upgraded), only(&upgraded, &made)),
        (vec![], vec![]),
        "(only in the new database, only in the upgraded one)"
    );
    assert_eq!(made, upgraded);
}

#[test]
fn a_database_from_a_newer_herald_is_refused() {
    let Some(db) = ScratchDatabase::new("a_database_from_a_newer_herald_is_refused") else {
        return;
    };
    let s = Postgres::open(&db.target()).unwrap();
    s.client()
        .execute("UPDATE herald_schema SET version = 99", &[])
        .unwrap();
    drop(s);
    let e = Postgres::open(&db.target()).err().unwrap();
    assert!(e.fault.to_string().contains("newer herald"), "{e}");
    assert!(!e.to_string().contains(&db.password), "no password in {e}");
}

#[test]
fn tls_to_the_database_checks_the_certificate() {
    let Some(db) = ScratchDatabase::new("tls_to_the_database_checks_the_certificate") else {
        return;
    };
    let Some(ca) = &db.ca else {
        eprintln!("SKIPPED TLS: the test cluster has no certificate");
        return;
    };
    let pem = std::fs::read(ca).unwrap();
    let url = format!("{}?sslmode=require", db.url);
    let t = Target::new(&url, Some(db.password.as_bytes()), Some(&pem)).unwrap();
    let s = Postgres::open(&t).unwrap();
    let ssl: bool = s
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is encrypted");
    // Without the private CA, the certificate is not trusted.
    let t = Target::new(&url, Some(db.password.as_bytes()), None).unwrap();
    let e = Postgres::open(&t).err().unwrap();
    assert!(
        e.fault.to_string().contains("cannot reach the database"),
        "{e}"
    );
    // A wrong password is named, and not shown.
    let t = Target::new(&db.url, Some(b"not-the-password"), None).unwrap();
    let e = Postgres::open(&t).err().unwrap();
    assert!(e.fault.to_string().contains("password"), "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");
}

#[test]
fn the_shared_rate_holds_across_senders() {
    let Some(db) = ScratchDatabase::new("the_shared_rate_holds_across_senders") else {
        return;
    };
    let mut a = Postgres::open(&db.target()).unwrap();
    let b = Postgres::open(&db.target()).unwrap();
    campaign(&mut a, 1);
    let _la = a.lock("c").unwrap().unwrap();
    let _lb = b.lock("c").unwrap().unwrap();
    let rate = Rate {
        max: 3,
        window: Duration::from_secs(3600),
    };
    let ga = a.rate_gate("c", rate).unwrap().unwrap();
    let gb = b.rate_gate("c", rate).unwrap().unwrap();
    // Three slots between the two senders, then nothing for an hour.
    let s1 = ga.take().unwrap().unwrap();
    let s2 = gb.take().unwrap().unwrap();
    let s3 = ga.take().unwrap().unwrap();
    // Not answered yet: ask again shortly.
    assert!(gb.take().unwrap().is_err());
    for s in [s1, s2, s3] {
        ga.answered(s).unwrap();
    }
    let wait = gb.take().unwrap().unwrap_err();
    assert!(wait > Duration::from_secs(3500), "{wait:?}");
}
