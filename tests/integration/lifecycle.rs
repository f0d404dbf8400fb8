//! The model-based test of a campaign's whole lifecycle (issue 23): random
//! sequences of list edits, relay faults (4xx, 5xx, 421, a connection
//! dropped during the message, a relay that does not answer), runs with
//! unsubscribes, a full disk, its repair and stops arriving at random
//! moments, and restarts, against the engine with the memory relay on
//! tokio's paused clock and a journal that fails on command
//! ([`crate::faulty`]). After every step: nobody mailed twice, nobody
//! mailed more than 2 s after their suppression, no second at the relay
//! with more messages than its rate (across runs and restarts too),
//! nothing mailed that the journal does not know, everyone once in the
//! journal; at the end, after
//! the disk is fixed and the command run again, nobody on the final list
//! lost. Seeded (`HERALD_LIFECYCLE_SEED`), a bounded number of cases
//! (`HERALD_LIFECYCLE_CASES`, default 40): both are printed. proptest
//! shrinks a failing sequence to a minimal one, which becomes a named
//! regression test below.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::deliver::Failure;
use herald::deliver::memory::{Fault, Memory};
use herald::store::{self, State};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tokio::time::Instant;

use crate::engine::{CAMPAIGN, Rig, Settings, address, rig_of};
use crate::faulty::{Failing, Switch};

/// Addresses a case draws from.
const PEOPLE: usize = 10;

#[derive(Debug, Clone)]
enum Op {
    /// The list now has these of the people (the list is imported again,
    /// as `herald send` does: suppressed people are skipped).
    Edit(Vec<bool>),
    /// The next attempt to this person meets this at the relay.
    Fault(usize, RelayFault),
    /// A run, and what happens during it, at these moments (ms).
    Run(Vec<(u64, During)>),
    /// herald starts again: the journal is opened anew, the disk repaired.
    Restart,
}

#[derive(Debug, Clone, Copy)]
enum RelayFault {
    Greylisted,
    Gone,
    ServiceDown,
    Dropped,
    NoAnswer,
}

#[derive(Debug, Clone, Copy)]
enum During {
    Unsubscribe(usize),
    DiskFull,
    DiskFixed,
    Stop,
}

fn op() -> impl Strategy<Value = Op> {
    let fault = prop_oneof![
        Just(RelayFault::Greylisted),
        Just(RelayFault::Gone),
        Just(RelayFault::ServiceDown),
        Just(RelayFault::Dropped),
        Just(RelayFault::NoAnswer),
    ];
    let during = prop_oneof![
        3 => (0..PEOPLE).prop_map(During::Unsubscribe),
        1 => Just(During::DiskFull),
        1 => Just(During::DiskFixed),
        1 => Just(During::Stop),
    ];
    prop_oneof![
        1 => proptest::collection::vec(proptest::bool::weighted(0.8), PEOPLE).prop_map(Op::Edit),
        2 => (0..PEOPLE, fault).prop_map(|(i, f)| Op::Fault(i, f)),
        3 => proptest::collection::vec((0u64..4000, during), 0..4).prop_map(Op::Run),
        1 => Just(Op::Restart),
    ]
}

/// The relay's rate in the cases, a second's worth.
const RATE_PER_SECOND: usize = 5;

fn settings() -> Settings {
    Settings {
        connections: 2,
        rate: Some(
            herald::deliver::throttle::Rate::parse(&format!("{RATE_PER_SECOND}/s")).unwrap(),
        ),
        max_attempts: 3,
        retry_base: Duration::from_millis(500),
        timeout: Duration::from_secs(3),
        relay_down_after: Duration::from_secs(8),
        ..Settings::default()
    }
}

/// What the test knows besides the journal.
struct World {
    rig: Rig,
    switch: Switch,
    mailer: Memory,
    list: Vec<bool>,
    /// When each person was suppressed (tokio's clock).
    suppressed: HashMap<String, Instant>,
}

impl World {
    fn new() -> World {
        let mut rig = rig_of((0..PEOPLE).map(address).collect());
        let switch = Switch::default();
        let inner = rig.store.take().unwrap();
        rig.store = Some(Box::new(Failing::new(inner, switch.clone())));
        World {
            rig,
            switch,
            mailer: Memory::new(),
            list: vec![true; PEOPLE],
            suppressed: HashMap::new(),
        }
    }

    fn import(&mut self, list: &[bool]) {
        let store = self.rig.store.as_mut().unwrap();
        let suppressed: Vec<bool> = (0..PEOPLE)
            .map(|i| store.is_suppressed(&address(i)).unwrap())
            .collect();
        let Ok(mut import) = store.import(CAMPAIGN) else {
            // The disk is full: herald stops before anything; the list is as it was.
            return;
        };
        for i in (0..PEOPLE).filter(|i| list[*i]) {
            let r = if suppressed[i] {
                import.skip(&address(i), "suppressed")
            } else {
                import.add(&address(i), i as i64 + 2, &[])
            };
            r.unwrap();
        }
        if import.commit().is_ok() {
            self.list = list.to_vec();
        }
    }

    /// A run as `herald send` makes it: the suppression mark, then the
    /// list imported again (suppressed people skipped), then the engine.
    async fn run(&mut self, during: &[(u64, During)]) {
        let Ok(mark) = self.rig.store().suppression_mark() else {
            return;
        };
        let list = self.list.clone();
        self.import(&list);
        let interrupt = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let other = std::sync::Mutex::new(store::open(self.rig._dir.path()).unwrap());
        let events = {
            let mut during = during.to_vec();
            during.sort_by_key(|(at, _)| *at);
            let (switch, interrupt) = (self.switch.clone(), Arc::clone(&interrupt));
            tokio::spawn(async move {
                let mut when = HashMap::new();
                for (at, what) in during {
                    tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                    match what {
                        During::Unsubscribe(i) => {
                            // Another process: `herald serve` on the same journal.
                            let added = other
                                .lock()
                                .unwrap()
                                .suppress(&[store::Suppressed {
                                    email: address(i),
                                    reason: "unsubscribed".into(),
                                    source: store::Source::OneClick,
                                    campaign: Some(CAMPAIGN.into()),
                                    added_at: "2026-12-06T08:00:00Z".into(),
                                }])
                                .unwrap();
                            if added > 0 {
                                when.insert(address(i), Instant::now());
                            }
                        }
                        During::DiskFull => switch.fail_writes(true),
                        During::DiskFixed => switch.fail_writes(false),
                        During::Stop => interrupt.store(true, Ordering::SeqCst),
                    }
                }
                when
            })
        };
        let settings = Settings {
            suppression_mark: Some(mark),
            ..settings()
        };
        self.rig
            .run_with(&self.mailer, settings, Arc::clone(&interrupt))
            .await;
        // What is still to happen happens after the run (as it would
        // between runs).
        let when = events.await.unwrap();
        for (email, at) in when {
            self.suppressed.entry(email).or_insert(at);
        }
    }

    fn restart(&mut self) {
        let store = self.rig.store.take().unwrap();
        drop(store);
        self.switch.fail_writes(false);
        let inner = store::open(self.rig._dir.path()).unwrap();
        self.rig.store = Some(Box::new(Failing::new(inner, self.switch.clone())));
    }

    /// The invariants that hold after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        let delivered = self.mailer.delivered();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for d in &delivered {
            *count.entry(d.to.as_str()).or_default() += 1;
            if let Some(at) = self.suppressed.get(&d.to) {
                prop_assert!(
                    d.at <= *at + Duration::from_secs(2),
                    "{} mailed {:?} after unsubscribing",
                    d.to,
                    d.at - *at
                );
            }
        }
        for (to, n) in &count {
            prop_assert!(*n == 1, "{to} mailed {n} times");
        }
        // The relay's rate (5 a second, [`settings`]) holds across every
        // run and restart so far, counted as the relay counts, by arrival:
        // no second anywhere holds a sixth message. (A run starts from the
        // times the journal kept of the last ones, issue 23.)
        let mut times: Vec<Instant> = delivered.iter().map(|d| d.at).collect();
        times.sort();
        for w in times.windows(RATE_PER_SECOND + 1) {
            prop_assert!(
                w[RATE_PER_SECOND] - w[0] >= Duration::from_secs(1),
                "{} messages reached the relay within {:?} at a rate of {RATE_PER_SECOND}/s",
                RATE_PER_SECOND + 1,
                w[RATE_PER_SECOND] - w[0]
            );
        }
        let records = self.rig.store().recipients(CAMPAIGN).unwrap();
        let mut seen = HashMap::new();
        for r in &records {
            prop_assert!(
                seen.insert(r.email.clone(), r.state).is_none(),
                "{} twice in the journal",
                r.email
            );
        }
        for to in count.keys() {
            let state = seen.get(*to).copied();
            prop_assert!(
                matches!(state, Some(State::Sent | State::Sending)),
                "{to} was mailed but the journal says {state:?}"
            );
        }
        Ok(())
    }

    /// After the sequence: the disk is fixed and the same command run
    /// until there is nothing left; nobody on the final list is lost.
    async fn settle(&mut self) -> Result<(), TestCaseError> {
        self.restart();
        let list = self.list.clone();
        self.import(&list);
        for _ in 0..6 {
            self.run(&[]).await;
            self.check()?;
        }
        let delivered: std::collections::HashSet<String> =
            self.mailer.delivered().into_iter().map(|d| d.to).collect();
        let records = self.rig.store().recipients(CAMPAIGN).unwrap();
        for i in (0..PEOPLE).filter(|i| self.list[*i]) {
            let email = address(i);
            if self.suppressed.contains_key(&email) || delivered.contains(&email) {
                continue;
            }
            let state = records.iter().find(|r| r.email == email).map(|r| r.state);
            // Refused for good (a 5xx), or of unknown outcome (a message
            // that may have reached the relay): told, not lost.
            prop_assert!(
                matches!(state, Some(State::Failed | State::Sending | State::Skipped)),
                "{email} is on the list and was never mailed: {state:?}"
            );
        }
        Ok(())
    }
}

fn fault(f: RelayFault) -> Fault {
    match f {
        RelayFault::Greylisted => {
            Fault::Refuse(Failure::transient("451 4.7.1 greylisted, try again later"))
        }
        RelayFault::Gone => Fault::Refuse(Failure::permanent("550 5.1.1 no such user")),
        RelayFault::ServiceDown => Fault::Refuse(Failure::relay("421 4.3.2 service not available")),
        RelayFault::Dropped => Fault::DropDuringData,
        RelayFault::NoAnswer => Fault::Slow(Duration::from_secs(10)),
    }
}

/// One sequence, on a paused clock of its own.
fn play(ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut w = World::new();
        for op in ops {
            match op {
                Op::Edit(list) => w.import(list),
                Op::Fault(i, f) => w.mailer.script(&address(*i), [fault(*f)]),
                Op::Run(during) => w.run(during).await,
                Op::Restart => w.restart(),
            }
            w.check()?;
        }
        w.settle().await
    })
}

#[test]
fn a_campaigns_lifecycle_keeps_its_promises_whatever_happens() {
    let seed: u64 = std::env::var("HERALD_LIFECYCLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let cases: u32 = std::env::var("HERALD_LIFECYCLE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    eprintln!(
        "lifecycle: {cases} cases, seed {seed} (HERALD_LIFECYCLE_SEED={seed} runs the same again)"
    );
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&proptest::collection::vec(op(), 1..10), |ops| play(&ops));
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

/// Found by the test above (seed 17553277132110370136): someone who
/// unsubscribes as a run starts, which is stopped at once, is not mailed
/// by the next run. (The harness's runs did not import the list again as
/// `herald send` does, with the suppression mark taken first.)
#[test]
fn an_unsubscribe_as_a_stopped_run_starts_is_honoured_by_the_next_run() {
    let ops = [
        Op::Run(vec![
            (2580, During::DiskFixed),
            (0, During::Unsubscribe(5)),
            (1, During::Stop),
        ]),
        Op::Run(vec![]),
    ];
    play(&ops).unwrap();
}
