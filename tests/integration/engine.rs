//! The delivery engine in-process: the memory Mailer fails on cue and
//! tokio's paused clock makes back-off, pauses and rate windows take no
//! real time, so these tests are fast and deterministic. Each asserts what
//! a person would check in `herald status` or at the relay: who got the
//! message, how often, and when.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use herald::config::Config;
use herald::deliver::engine::{self, Outcome, Plan, Progress, Stop};
use herald::deliver::memory::{Fault, Memory};
use herald::deliver::message::{Composer, Mode};
use herald::deliver::throttle::Rate;
use herald::deliver::{Failure, FailureKind};
use herald::store::{self, State, Store, Update};

use crate::util::*;

pub(crate) const CAMPAIGN: &str = "example@2025-05-28";

/// A run's settings as these tests write them: the engine's, and the
/// first relay's (its rate, connections, name, weight and quota), which
/// [`Rig::run_on`] puts first in the plan's list of relays.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) connections: usize,
    pub(crate) rate: Option<Rate>,
    pub(crate) batch: Option<(u64, Duration)>,
    pub(crate) max_per_run: Option<u64>,
    pub(crate) max_attempts: u32,
    pub(crate) retry_base: Duration,
    pub(crate) timeout: Duration,
    pub(crate) resend_unknown: bool,
    pub(crate) relay_down_after: Duration,
    pub(crate) window_closes_after: Option<Duration>,
    /// `None`: the name the Mailer gives itself.
    pub(crate) relay_name: Option<String>,
    pub(crate) relay_weight: u32,
    pub(crate) relay_quota: Option<engine::Quota>,
    pub(crate) domains: Vec<engine::DomainGroup>,
    pub(crate) suppression_mark: Option<i64>,
}

impl Default for Settings {
    /// The engine's defaults, and a first relay of 4 connections.
    fn default() -> Settings {
        let e = engine::Settings::default();
        Settings {
            connections: 4,
            rate: None,
            batch: e.batch,
            max_per_run: e.max_per_run,
            max_attempts: e.max_attempts,
            retry_base: e.retry_base,
            timeout: e.timeout,
            resend_unknown: e.resend_unknown,
            relay_down_after: e.relay_down_after,
            window_closes_after: e.window_closes_after,
            relay_name: None,
            relay_weight: 1,
            relay_quota: None,
            domains: e.domains,
            suppression_mark: e.suppression_mark,
        }
    }
}

impl Settings {
    /// The engine's settings, and the first relay through `mailer`.
    fn split(
        self,
        mailer: &Memory,
        wall: herald::clock::Wall,
    ) -> (engine::Settings, engine::Lane<Memory>) {
        let first = engine::Lane {
            name: self
                .relay_name
                .unwrap_or_else(|| engine::Lane::of(mailer.clone()).name),
            mailer: mailer.clone(),
            rate: self.rate,
            connections: self.connections,
            weight: self.relay_weight,
            quota: self.relay_quota,
        };
        let settings = engine::Settings {
            batch: self.batch,
            max_per_run: self.max_per_run,
            max_attempts: self.max_attempts,
            retry_base: self.retry_base,
            timeout: self.timeout,
            resend_unknown: self.resend_unknown,
            relay_down_after: self.relay_down_after,
            window_closes_after: self.window_closes_after,
            domains: self.domains,
            suppression_mark: self.suppression_mark,
            wall,
        };
        (settings, first)
    }
}

pub(crate) struct Rig {
    pub(crate) _dir: tempfile::TempDir,
    composer: Arc<Composer>,
    pub(crate) store: Option<Box<dyn Store>>,
    /// One wall clock on tokio's paused clock for every run of the rig, so
    /// the rates' marks a run leaves are as old, to the next run, as the
    /// relay saw them (see `herald::clock::Wall`).
    wall: herald::clock::Wall,
}

pub(crate) fn address(i: usize) -> String {
    format!("reader{i}@example.org")
}

/// The example issue, and a journal holding `n` recipients.
fn rig(n: usize) -> Rig {
    rig_of((0..n).map(address).collect())
}

/// The example issue, and a journal holding these recipients.
pub(crate) fn rig_of(addresses: Vec<String>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(Some(&example_config()), &[]).unwrap();
    let path = example_config();
    let issue = herald::compose::Issue::compose(&example_post(), &config.compose()).unwrap();
    let composer = Composer::new(
        &issue,
        &config,
        &path,
        Some(herald::unsubscribe::Keys::new(
            b"engine-test-secret".to_vec(),
            vec![],
        )),
        Mode::Campaign,
    )
    .unwrap();
    let mut store: Box<dyn Store> = store::open(dir.path()).unwrap();
    store
        .upsert_campaign(CAMPAIGN, "post.md", composer.content_hash(), &[])
        .unwrap();
    let mut import = store.import(CAMPAIGN).unwrap();
    for (i, a) in addresses.iter().enumerate() {
        import.add(a, i as i64 + 2, &[]).unwrap();
    }
    import.commit().unwrap();
    Rig {
        _dir: dir,
        composer: Arc::new(composer),
        store: Some(store),
        wall: herald::clock::Wall::anchored_now(),
    }
}

impl Rig {
    async fn run(&mut self, mailer: &Memory, settings: Settings) -> Outcome {
        self.run_with(mailer, settings, Arc::new(AtomicBool::new(false)))
            .await
    }

    pub(crate) async fn run_with(
        &mut self,
        mailer: &Memory,
        settings: Settings,
        interrupt: Arc<AtomicBool>,
    ) -> Outcome {
        self.run_on(mailer, settings, Vec::new(), interrupt).await
    }

    /// A run through `mailer` and the further relays `others`.
    async fn run_on(
        &mut self,
        mailer: &Memory,
        settings: Settings,
        others: Vec<engine::Lane<Memory>>,
        interrupt: Arc<AtomicBool>,
    ) -> Outcome {
        let (settings, first) = settings.split(mailer, self.wall);
        let plan = Plan {
            campaign: CAMPAIGN.into(),
            composer: Arc::clone(&self.composer),
            columns: Arc::new(Vec::new()),
            relays: std::iter::once(first).chain(others).collect(),
            settings,
        };
        let store = self.store.take().unwrap();
        let (outcome, store) =
            engine::run_async(store, plan, Arc::new(Progress::default()), interrupt, false).await;
        self.store = Some(store);
        outcome
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_deref().unwrap()
    }

    fn state_of(&self, email: &str) -> Option<(State, i64)> {
        // Every recipient, whatever their state, through `problems` and the queue.
        let s = self.store();
        s.problems(CAMPAIGN, i64::MAX)
            .unwrap()
            .into_iter()
            .find(|p| p.email == email)
            .map(|p| (p.state, p.attempts))
    }
}

fn settings() -> Settings {
    Settings {
        connections: 3,
        retry_base: Duration::from_secs(1),
        ..Settings::default()
    }
}

fn per_recipient(mailer: &Memory) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for d in mailer.delivered() {
        *m.entry(d.to).or_default() += 1;
    }
    m
}

#[tokio::test(start_paused = true)]
async fn everyone_gets_exactly_one_message_and_a_rerun_sends_nothing() {
    let mut rig = rig(40);
    let mailer = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    let got = per_recipient(&mailer);
    assert_eq!(got.len(), 40);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.pending, c.unknown), (40, 0, 0));
    // Each message names its person and carries their own Message-ID.
    let ids: std::collections::HashSet<_> = mailer
        .delivered()
        .into_iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(ids.len(), 40);

    let out = rig.run(&mailer, settings()).await;
    assert_eq!((out.stop, out.handed_over), (Stop::Done, 0));
    assert_eq!(mailer.delivered().len(), 40);
}

/// A run ends when its last message is answered, not at the next look
/// the distributor takes on a timer (that cost every run a tenth of a
/// second, and the send benchmark a few percent).
#[tokio::test(start_paused = true)]
async fn a_run_ends_as_soon_as_its_last_message_is_answered() {
    let mut rig = rig(6);
    let mailer = Memory::new().with_latency(Duration::from_millis(30));
    let start = tokio::time::Instant::now();
    let out = rig.run(&mailer, settings()).await;
    let took = start.elapsed();
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(mailer.delivered().len(), 6);
    // Three connections, two messages each of 30 ms (the paused clock
    // makes this exact; the distributor's timer would be at 100 ms).
    assert!(took < Duration::from_millis(70), "the run took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_waits_then_delivered() {
    let mut rig = rig(5);
    let mailer = Memory::new();
    let who = address(2);
    mailer.script(
        &who,
        [
            Fault::Refuse(Failure::transient("451 4.3.0 try later")),
            Fault::Refuse(Failure::transient("421 4.4.2 connection timed out")),
            Fault::DropDuringData,
        ],
    );
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&mailer).get(&who), Some(&1));
    assert_eq!(mailer.attempts(&who), 4);
    let t = mailer.attempt_times(&who);
    // 1 s, then 2 s, then 4 s (each plus up to half again of jitter).
    for (i, base) in [1u64, 2, 4].into_iter().enumerate() {
        let gap = t[i + 1] - t[i];
        assert!(
            gap >= Duration::from_secs(base) && gap <= Duration::from_millis(base * 1500 + 100),
            "wait {i}: {gap:?}"
        );
    }
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().sent, 5);
}

#[tokio::test(start_paused = true)]
async fn after_max_attempts_a_recipient_is_deferred_to_the_next_run() {
    let mut rig = rig(4);
    let mailer = Memory::new();
    let who = address(1);
    mailer.script(
        &who,
        (0..3).map(|_| Fault::Refuse(Failure::transient("450 4.2.1 mailbox busy"))),
    );
    let out = rig
        .run(
            &mailer,
            Settings {
                max_attempts: 3,
                ..settings()
            },
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(mailer.attempts(&who), 3);
    assert_eq!(rig.state_of(&who), Some((State::Deferred, 3)));
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.deferred), (3, 1));
    assert!(
        !rig.store
            .as_mut()
            .unwrap()
            .finish_if_done(CAMPAIGN)
            .unwrap()
    );

    // The next run tries them again, and only them.
    rig.run(&mailer, settings()).await;
    assert_eq!(mailer.delivered().len(), 4);
    assert_eq!(mailer.attempts(&who), 4);
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().sent, 4);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_refusal_is_never_retried_and_is_suppressed() {
    let mut rig = rig(3);
    let mailer = Memory::new();
    let who = address(0);
    mailer.script(
        &who,
        [Fault::Refuse(Failure::permanent("550 5.1.1 no such user"))],
    );
    rig.run(&mailer, settings()).await;
    assert_eq!(mailer.attempts(&who), 1);
    assert_eq!(rig.state_of(&who), Some((State::Failed, 1)));
    assert!(rig.store().is_suppressed(&who).unwrap());
    let problems = rig.store().problems(CAMPAIGN, 10).unwrap();
    assert_eq!(problems[0].reply.as_deref(), Some("550 5.1.1 no such user"));
    // Not tried again by the next run.
    rig.run(&mailer, settings()).await;
    assert_eq!(mailer.attempts(&who), 1);
    assert!(
        rig.store
            .as_mut()
            .unwrap()
            .finish_if_done(CAMPAIGN)
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_run_resumes_without_losing_or_doubling_anyone() {
    let mut rig = rig(60);
    let mailer = Memory::new().with_latency(Duration::from_millis(100));
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let (mailer, interrupt) = (mailer.clone(), Arc::clone(&interrupt));
        tokio::spawn(async move {
            while mailer.delivered().len() < 20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let out = rig.run_with(&mailer, settings(), interrupt).await;
    assert_eq!(out.stop, Stop::Interrupted);
    let first = mailer.delivered().len();
    assert!(
        (20..60).contains(&first),
        "{first} delivered before the stop"
    );
    let c = rig.store().counts(CAMPAIGN).unwrap();
    // Messages in flight finish and are journaled: nobody is left unknown.
    assert_eq!((c.sent as usize, c.unknown), (first, 0));

    rig.run(&mailer, settings()).await;
    let got = per_recipient(&mailer);
    assert_eq!(got.len(), 60);
    assert!(got.values().all(|&n| n == 1));
}

#[tokio::test(start_paused = true)]
async fn unknowns_are_not_resent_unless_asked() {
    let mut rig = rig(5);
    // A crash left two recipients in `sending`.
    let queue = rig.store().queue(CAMPAIGN, 0, 10, false).unwrap();
    let crashed: Vec<Update> = queue[..2]
        .iter()
        .map(|r| Update {
            seq: r.seq,
            state: State::Sending,
            reply: None,
            attempts: 1,
            suppress: None,
            relay: None,
        })
        .collect();
    rig.store
        .as_mut()
        .unwrap()
        .apply(CAMPAIGN, &crashed)
        .unwrap();
    let mailer = Memory::new();
    rig.run(&mailer, settings()).await;
    assert_eq!(mailer.delivered().len(), 3);
    assert_eq!(mailer.attempts(&queue[0].email), 0);
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().unknown, 2);

    rig.run(
        &mailer,
        Settings {
            resend_unknown: true,
            ..settings()
        },
    )
    .await;
    assert_eq!(per_recipient(&mailer).len(), 5);
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().sent, 5);
}

#[tokio::test(start_paused = true)]
async fn no_window_of_the_rate_ever_holds_one_message_too_many() {
    let mut rig = rig(45);
    let mailer = Memory::new().with_latency(Duration::from_millis(30));
    let rate = Rate::parse("10/s").unwrap();
    let started = tokio::time::Instant::now();
    rig.run(
        &mailer,
        Settings {
            connections: 4,
            rate: Some(rate),
            ..settings()
        },
    )
    .await;
    let mut at: Vec<_> = mailer.delivered().into_iter().map(|d| d.at).collect();
    at.sort();
    assert_eq!(at.len(), 45);
    for i in 0..at.len() - 10 {
        assert!(
            at[i + 10] - at[i] >= Duration::from_secs(1),
            "messages {i} and {} arrived {:?} apart",
            i + 10,
            at[i + 10] - at[i]
        );
    }
    // And the limit is a limit, not a crawl: 45 at 10/s need about 4 s.
    assert!(
        at[44] - started < Duration::from_secs(6),
        "{:?}",
        at[44] - started
    );
}

#[tokio::test(start_paused = true)]
async fn batches_pause_between_them() {
    let mut rig = rig(9);
    let mailer = Memory::new();
    rig.run(
        &mailer,
        Settings {
            connections: 1,
            batch: Some((3, Duration::from_secs(60))),
            ..settings()
        },
    )
    .await;
    let at: Vec<_> = mailer.delivered().into_iter().map(|d| d.at).collect();
    assert_eq!(at.len(), 9);
    assert!(at[3] - at[2] >= Duration::from_secs(60));
    assert!(at[6] - at[5] >= Duration::from_secs(60));
    assert!(at[2] - at[0] < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn max_per_run_sends_slices_in_list_order() {
    let mut rig = rig(10);
    let mailer = Memory::new();
    let slice = Settings {
        connections: 1,
        max_per_run: Some(4),
        ..settings()
    };
    let out = rig.run(&mailer, slice.clone()).await;
    assert_eq!((out.stop, out.handed_over), (Stop::Limit, 4));
    let first: Vec<_> = mailer.delivered().into_iter().map(|d| d.to).collect();
    assert_eq!(first, (0..4).map(address).collect::<Vec<_>>());
    rig.run(&mailer, slice.clone()).await;
    rig.run(&mailer, slice).await;
    let got = per_recipient(&mailer);
    assert_eq!(got.len(), 10);
    assert!(got.values().all(|&n| n == 1));
}

#[tokio::test(start_paused = true)]
async fn a_slow_down_pauses_the_whole_send_then_it_finishes() {
    let mut rig = rig(6);
    let mailer = Memory::new();
    let who = address(0);
    mailer.script(
        &who,
        [Fault::Refuse(Failure::slow_down(
            "421 4.7.0 too many messages, slow down",
        ))],
    );
    let out = rig
        .run(
            &mailer,
            Settings {
                connections: 1,
                ..settings()
            },
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let t = mailer.attempt_times(&who);
    assert_eq!(t.len(), 2);
    assert!(t[1] - t[0] >= Duration::from_secs(2), "{:?}", t[1] - t[0]);
    assert_eq!(per_recipient(&mailer).len(), 6);
}

#[tokio::test(start_paused = true)]
async fn failed_connections_are_retried() {
    let mut rig = rig(3);
    let mailer = Memory::new();
    mailer.fail_connects(2, Failure::relay("connection refused"));
    let out = rig
        .run(
            &mailer,
            Settings {
                connections: 1,
                ..settings()
            },
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&mailer).len(), 3);
    assert_eq!(mailer.connects(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refused_login_stops_the_run_and_loses_nobody() {
    let mut rig = rig(5);
    let mailer = Memory::new();
    mailer.fail_connects(
        10,
        Failure {
            kind: FailureKind::Config,
            reply: "535 5.7.8 authentication failed".into(),
        },
    );
    let out = rig
        .run(
            &mailer,
            Settings {
                connections: 1,
                ..settings()
            },
        )
        .await;
    assert!(
        matches!(&out.stop, Stop::Fatal(why) if why.contains("535")),
        "{:?}",
        out.stop
    );
    assert!(mailer.delivered().is_empty());
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!(c.sent + c.failed, 0);
    // The next run, with the login fixed, mails everyone.
    let fixed = Memory::new();
    rig.run(&fixed, settings()).await;
    assert_eq!(per_recipient(&fixed).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_greylisted_recipient_waits_alone_and_nobody_else_is_slowed() {
    let mut rig = rig(30);
    // One connection alone would need 29 x 50 ms = 1.45 s for the others.
    let mailer = Memory::new().with_latency(Duration::from_millis(50));
    let who = address(0);
    mailer.script(
        &who,
        (0..2).map(|_| {
            Fault::Refuse(Failure::transient(
                "451 4.7.1 Greylisted, please try again in 60 seconds",
            ))
        }),
    );
    let started = tokio::time::Instant::now();
    let out = rig
        .run(
            &mailer,
            Settings {
                connections: 2,
                retry_base: Duration::from_secs(60),
                ..settings()
            },
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let delivered = mailer.delivered();
    assert_eq!(per_recipient(&mailer).len(), 30);
    // Everyone else went at full speed on both connections while the
    // greylisted recipient waited, with no connection held for them.
    let others_done = delivered
        .iter()
        .filter(|d| d.to != who)
        .map(|d| d.at)
        .max()
        .unwrap();
    assert!(
        others_done - started < Duration::from_secs(1),
        "{:?}",
        others_done - started
    );
    let t = mailer.attempt_times(&who);
    assert_eq!(t.len(), 3);
    assert!(t[1] - t[0] >= Duration::from_secs(60));
    assert!(t[2] - t[1] >= Duration::from_secs(120));
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_cannot_be_reached_stops_the_run_and_nobody_loses_an_attempt() {
    let mut rig = rig(25);
    let mailer = Memory::new();
    mailer.fail_connects(
        10_000,
        Failure::relay("connection refused (127.0.0.1:2525)"),
    );
    let started = tokio::time::Instant::now();
    let out = rig.run(&mailer, settings()).await;
    let took = tokio::time::Instant::now() - started;
    assert!(
        matches!(&out.stop, Stop::RelayDown(why) if why.contains("connection refused")),
        "{:?}",
        out.stop
    );
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(90),
        "stopped after {took:?}"
    );
    // Everyone still waits, untouched: not deferred, no attempt used.
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.pending, c.deferred, c.unknown), (25, 0, 0));
    let queue = rig.store().queue(CAMPAIGN, 0, 100, false).unwrap();
    assert!(queue.iter().all(|r| r.attempts == 0));
    // One probe a second (so a relay that is back is used within one),
    // not one per worker: a storm would be three a second or more.
    let most = took.as_secs() + 3 + 2;
    assert!(
        mailer.connects() <= most,
        "{} connections in {took:?}",
        mailer.connects()
    );
}

#[tokio::test(start_paused = true)]
async fn a_relay_answering_421_to_everything_is_down_too() {
    let mut rig = rig(500);
    let mailer = Memory::new();
    mailer.refuse_all(Some(Failure::relay("421 4.3.2 Service not available")));
    let started = tokio::time::Instant::now();
    let out = rig.run(&mailer, settings()).await;
    assert!(matches!(out.stop, Stop::RelayDown(_)), "{:?}", out.stop);
    assert!(tokio::time::Instant::now() - started < Duration::from_secs(90));
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().pending, 500);
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_comes_back_during_the_pauses_is_used_again() {
    let mut rig = rig(10);
    let mailer = Memory::new();
    mailer.fail_connects(4, Failure::relay("connection refused"));
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&mailer).len(), 10);
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.deferred), (10, 0));
}

/// A worker asks for its next message while it sends the current one; if
/// its relay says "slow down" meanwhile, that next message waits out the
/// pause like everyone else instead of going out during it.
#[tokio::test(start_paused = true)]
async fn nothing_goes_out_during_a_pause_not_even_a_message_asked_for_ahead() {
    let mut rig = rig(12);
    let mailer = Memory::new().with_latency(Duration::from_millis(100));
    // Three connections: the first is refused "slow down" on its second
    // message, while the other two are still busy with slow ones.
    mailer.script(&address(1), [Fault::Slow(Duration::from_millis(300))]);
    mailer.script(&address(2), [Fault::Slow(Duration::from_millis(600))]);
    mailer.script(
        &address(3),
        [Fault::Refuse(Failure::slow_down("421 4.7.0 slow down"))],
    );
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    let got = per_recipient(&mailer);
    assert_eq!(got.len(), 12);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    let refused_at = mailer.attempt_times(&address(3))[0];
    let pause_ends = refused_at + herald::deliver::throttle::MIN_BACKOFF;
    for i in 0..12 {
        for at in mailer.attempt_times(&address(i)) {
            assert!(
                at <= refused_at || at >= pause_ends,
                "{} was tried {:?} into the relay's pause",
                address(i),
                at - refused_at
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_long_pause_ends_the_run_within_seconds() {
    let mut rig = rig(10);
    let mailer = Memory::new();
    mailer.refuse_all(Some(Failure::slow_down("451 4.7.0 rate limit exceeded")));
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let interrupt = Arc::clone(&interrupt);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let started = tokio::time::Instant::now();
    let out = rig
        .run_with(
            &mailer,
            Settings {
                relay_down_after: Duration::from_secs(3600),
                ..settings()
            },
            interrupt,
        )
        .await;
    let took = tokio::time::Instant::now() - started;
    assert_eq!(out.stop, Stop::Interrupted);
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().pending, 10);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_about_the_message_is_recorded_but_does_not_suppress_the_address() {
    let mut rig = rig(3);
    let mailer = Memory::new();
    let (spam, foreign) = (address(0), address(1));
    mailer.script(
        &spam,
        [Fault::Refuse(Failure::permanent(
            "550 5.7.1 Message rejected as spam",
        ))],
    );
    mailer.script(
        &foreign,
        [Fault::Refuse(Failure {
            kind: FailureKind::Unsupported,
            reply: "the address has non-ASCII characters and the relay does not offer SMTPUTF8"
                .into(),
        })],
    );
    rig.run(&mailer, settings()).await;
    assert_eq!(rig.state_of(&spam), Some((State::Failed, 1)));
    assert!(!rig.store().is_suppressed(&spam).unwrap());
    assert!(!rig.store().is_suppressed(&foreign).unwrap());
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.failed, c.skipped), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_send_window_stops_the_run_and_the_rest_waits() {
    let mut rig = rig(10);
    let mailer = Memory::new();
    // One a second, and the window closes 3.5 s in: messages at 0, 1, 2
    // and 3 s go, nothing starts after the close.
    let out = rig
        .run(
            &mailer,
            Settings {
                connections: 1,
                rate: Some(Rate::parse("1/s").unwrap()),
                window_closes_after: Some(Duration::from_millis(3500)),
                ..settings()
            },
        )
        .await;
    assert_eq!(out.stop, Stop::WindowClosed);
    let sent: Vec<_> = mailer.delivered().into_iter().map(|d| d.to).collect();
    assert_eq!(sent, (0..4).map(address).collect::<Vec<_>>());
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.pending, c.deferred), (4, 6, 0), "{c:?}");
    // The next run (in the next window) sends the rest, nobody twice.
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    let got = per_recipient(&mailer);
    assert_eq!(got.len(), 10);
    assert!(got.values().all(|&n| n == 1));
}

/// A second memory relay for [`Rig::run_on`].
fn lane(
    name: &str,
    mailer: &Memory,
    rate: Option<Rate>,
    connections: usize,
) -> engine::Lane<Memory> {
    engine::Lane {
        name: name.into(),
        mailer: mailer.clone(),
        rate,
        connections,
        weight: 1,
        quota: None,
    }
}

fn quota(max_per_day: u64) -> Option<engine::Quota> {
    Some(engine::Quota {
        max_per_day,
        zone: jiff::tz::TimeZone::UTC,
        zone_name: "UTC".into(),
    })
}

/// No window of `rate.window` holds more than `rate.max` of `at`.
fn assert_within(mut at: Vec<tokio::time::Instant>, rate: Rate, what: &str) {
    at.sort();
    let n = rate.max as usize;
    for i in 0..at.len().saturating_sub(n) {
        assert!(
            at[i + n] - at[i] >= rate.window,
            "{what}: messages {i} and {} arrived {:?} apart",
            i + n,
            at[i + n] - at[i]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn two_relays_each_keep_their_own_rate_and_share_the_list() {
    let mut rig = rig(60);
    let a = Memory::new().with_latency(Duration::from_millis(30));
    let b = Memory::new().with_latency(Duration::from_millis(30));
    let (rate_a, rate_b) = (Rate::parse("4/s").unwrap(), Rate::parse("10/s").unwrap());
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 2,
                rate: Some(rate_a),
                ..settings()
            },
            vec![lane("b", &b, Some(rate_b), 3)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    // Everyone once, across both.
    let mut got = per_recipient(&a);
    for (k, v) in per_recipient(&b) {
        *got.entry(k).or_default() += v;
    }
    assert_eq!(got.len(), 60);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    // Both relays carried a share, each within its own rate.
    let at_a: Vec<_> = a.delivered().into_iter().map(|d| d.at).collect();
    let at_b: Vec<_> = b.delivered().into_iter().map(|d| d.at).collect();
    assert!(
        !at_a.is_empty() && !at_b.is_empty(),
        "{} {}",
        at_a.len(),
        at_b.len()
    );
    assert!(at_b.len() > at_a.len(), "{} {}", at_a.len(), at_b.len());
    assert_within(at_a, rate_a, "relay a");
    assert_within(at_b, rate_b, "relay b");
    assert_eq!(rig.store().counts(CAMPAIGN).unwrap().sent, 60);
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_refuses_everything_is_backed_off_alone_and_the_other_carries_the_run() {
    let mut rig = rig(40);
    let down = Memory::new();
    down.refuse_all(Some(Failure::relay("421 4.3.2 Service not available")));
    let up = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig
        .run_on(
            &down,
            settings(),
            vec![lane("up", &up, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert!(down.delivered().is_empty());
    let got = per_recipient(&up);
    assert_eq!(got.len(), 40);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    // The failing relay's refusals were not the recipients' doing: nobody
    // used up an attempt on them.
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.deferred, c.failed, c.pending), (40, 0, 0, 0));
    // Backed off, not hammered: a few probes, not one per recipient.
    let tried: u32 = (0..40).map(|i| down.attempts(&address(i))).sum();
    assert!(tried < 20, "{tried} attempts at the refusing relay");
}

#[tokio::test(start_paused = true)]
async fn a_relay_that_cannot_be_reached_hands_its_share_to_the_other() {
    let mut rig = rig(30);
    let gone = Memory::new();
    gone.fail_connects(
        10_000,
        Failure::relay("connection refused (127.0.0.1:2526)"),
    );
    let up = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig
        .run_on(
            &up,
            settings(),
            vec![lane("gone", &gone, None, 3)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&up).len(), 30);
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.deferred, c.pending), (30, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_run_stops_as_relay_down_only_when_every_relay_is_down() {
    let mut rig = rig(20);
    let a = Memory::new();
    a.fail_connects(10_000, Failure::relay("connection refused (a)"));
    let b = Memory::new();
    b.fail_connects(10_000, Failure::relay("connection refused (b)"));
    let started = tokio::time::Instant::now();
    let out = rig
        .run_on(
            &a,
            settings(),
            vec![lane("b", &b, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    let took = tokio::time::Instant::now() - started;
    assert!(
        matches!(&out.stop, Stop::RelayDown(why) if why.contains("every relay")),
        "{:?}",
        out.stop
    );
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(120),
        "stopped after {took:?}"
    );
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.pending, c.deferred, c.unknown), (20, 0, 0));
    let queue = rig.store().queue(CAMPAIGN, 0, 100, false).unwrap();
    assert!(queue.iter().all(|r| r.attempts == 0));
}

#[tokio::test(start_paused = true)]
async fn relays_free_at_the_same_moment_share_the_list_by_weight() {
    let mut rig = rig(80);
    let a = Memory::new().with_latency(Duration::from_millis(5));
    let b = Memory::new().with_latency(Duration::from_millis(5));
    // One message at a time to the domain: messages are scarcer than free
    // connections, so both relays are free whenever one may go, and the
    // weights decide.
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 3,
                relay_weight: 3,
                domains: vec![engine::DomainGroup {
                    name: "example.org".into(),
                    domains: vec!["example.org".into()],
                    rate: None,
                    connections: Some(1),
                }],
                ..settings()
            },
            vec![lane("b", &b, None, 3)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let (na, nb) = (a.delivered().len(), b.delivered().len());
    assert_eq!(na + nb, 80);
    // Weights 3 and 1: three quarters and one quarter.
    assert!((58..=62).contains(&na), "a {na}, b {nb}");
    // When messages are plenty, each relay carries what its connections
    // allow, whatever the weights: nobody waits for a relay's share.
    let mut rig = self::rig(80);
    let (a, b) = (
        Memory::new().with_latency(Duration::from_millis(5)),
        Memory::new().with_latency(Duration::from_millis(5)),
    );
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 3,
                relay_weight: 3,
                ..settings()
            },
            vec![lane("b", &b, None, 3)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let (na, nb) = (a.delivered().len(), b.delivered().len());
    assert!(nb >= 30, "a {na}, b {nb}");
}

#[tokio::test(start_paused = true)]
async fn a_relay_held_back_by_its_rate_does_not_hold_back_the_others() {
    let mut rig = rig(60);
    let slow = Memory::new().with_latency(Duration::from_millis(10));
    let fast = Memory::new().with_latency(Duration::from_millis(10));
    let started = tokio::time::Instant::now();
    let out = rig
        .run_on(
            &slow,
            Settings {
                connections: 2,
                rate: Some(Rate::parse("1/s").unwrap()),
                // A heavy weight does not make the list wait for it.
                relay_weight: 10,
                ..settings()
            },
            vec![lane("fast", &fast, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let took = tokio::time::Instant::now() - started;
    // One a second at the slow relay; the fast one takes the rest at once.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(slow.delivered().len() <= 3, "{}", slow.delivered().len());
    assert_eq!(slow.delivered().len() + fast.delivered().len(), 60);
}

#[tokio::test(start_paused = true)]
async fn a_domain_limit_holds_across_relays_and_nobody_else_waits_for_it() {
    // Every third reader is at a limited domain.
    let addresses: Vec<String> = (0..90)
        .map(|i| {
            if i % 3 == 0 {
                format!("reader{i}@limited.example")
            } else {
                format!("reader{i}@example.org")
            }
        })
        .collect();
    let mut rig = rig_of(addresses);
    let a = Memory::new().with_latency(Duration::from_millis(30));
    let b = Memory::new().with_latency(Duration::from_millis(30));
    let limit = Rate::parse("5/s").unwrap();
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 3,
                domains: vec![engine::DomainGroup {
                    name: "limited".into(),
                    domains: vec!["limited.example".into(), "other.example".into()],
                    rate: Some(limit),
                    connections: Some(2),
                }],
                ..settings()
            },
            vec![lane("b", &b, None, 3)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let all: Vec<_> = a.delivered().into_iter().chain(b.delivered()).collect();
    assert_eq!(all.len(), 90);
    let limited: Vec<_> = all
        .iter()
        .filter(|d| d.to.ends_with("@limited.example"))
        .map(|d| d.at)
        .collect();
    let others: Vec<_> = all
        .iter()
        .filter(|d| !d.to.ends_with("@limited.example"))
        .map(|d| d.at)
        .collect();
    // Both relays carried the limited domain, and together kept its rate.
    assert!(
        a.delivered()
            .iter()
            .any(|d| d.to.ends_with("@limited.example"))
            && b.delivered()
                .iter()
                .any(|d| d.to.ends_with("@limited.example"))
    );
    assert_within(limited.clone(), limit, "the limited domain across relays");
    // The 60 others did not wait behind it: they were all through long
    // before the 30 at 5 a second were.
    let last_other = others.iter().max().unwrap();
    let last_limited = limited.iter().max().unwrap();
    assert!(
        *last_limited - *last_other > Duration::from_secs(3),
        "{:?}",
        *last_limited - *last_other
    );
}

#[tokio::test(start_paused = true)]
async fn a_domain_limit_on_connections_keeps_that_many_in_flight_at_most() {
    let addresses: Vec<String> = (0..20).map(|i| format!("r{i}@limited.example")).collect();
    let mut rig = rig_of(addresses);
    // Each message takes a second: with one connection to the domain,
    // 20 messages take 20 seconds however many the relays have.
    let a = Memory::new().with_latency(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 4,
                domains: vec![engine::DomainGroup {
                    name: "limited.example".into(),
                    domains: vec!["limited.example".into()],
                    rate: None,
                    connections: Some(1),
                }],
                ..settings()
            },
            vec![lane("b", &a.clone(), None, 4)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    let took = tokio::time::Instant::now() - started;
    assert!(took >= Duration::from_secs(20), "took {took:?}");
    let mut at: Vec<_> = a.delivered().into_iter().map(|d| d.at).collect();
    at.sort();
    assert!(at.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn when_every_relay_has_spent_its_quota_the_run_stops_and_the_rest_waits() {
    let mut rig = rig(40);
    let a = Memory::new().with_latency(Duration::from_millis(5));
    let b = Memory::new().with_latency(Duration::from_millis(5));
    let settings = || Settings {
        connections: 2,
        relay_name: Some("a".into()),
        relay_quota: quota(10),
        ..settings()
    };
    let lanes = || {
        vec![engine::Lane {
            quota: quota(7),
            ..lane("b", &b, None, 3)
        }]
    };
    let out = rig
        .run_on(&a, settings(), lanes(), Arc::new(AtomicBool::new(false)))
        .await;
    assert!(
        matches!(&out.stop, Stop::QuotaSpent { detail, .. } if detail.contains("a: 10 a day")),
        "{:?}",
        out.stop
    );
    // Exactly each relay's quota, nobody twice, the rest untouched.
    assert_eq!((a.delivered().len(), b.delivered().len()), (10, 7));
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.pending, c.deferred, c.unknown), (17, 23, 0, 0));
    let today = herald::clock::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(rig.store().quota_used("a", &today).unwrap(), 10);
    assert_eq!(rig.store().quota_used("b", &today).unwrap(), 7);
    // A second run the same day sends nothing and stops the same way.
    let out = rig
        .run_on(&a, settings(), lanes(), Arc::new(AtomicBool::new(false)))
        .await;
    assert!(
        matches!(out.stop, Stop::QuotaSpent { .. }),
        "{:?}",
        out.stop
    );
    assert_eq!(a.delivered().len() + b.delivered().len(), 17);
}

#[tokio::test(start_paused = true)]
async fn a_relay_out_of_quota_leaves_the_rest_to_a_relay_without_one() {
    let mut rig = rig(30);
    let a = Memory::new().with_latency(Duration::from_millis(5));
    let b = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig
        .run_on(
            &a,
            Settings {
                relay_name: Some("capped".into()),
                relay_quota: quota(4),
                ..settings()
            },
            vec![lane("b", &b, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert!(a.delivered().len() <= 4, "{}", a.delivered().len());
    assert_eq!(a.delivered().len() + b.delivered().len(), 30);
    // What the capped relay took and did not use went back.
    let today = herald::clock::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(
        rig.store().quota_used("capped", &today).unwrap(),
        a.delivered().len() as u64
    );
}

#[tokio::test(start_paused = true)]
async fn a_relay_refusing_before_the_message_does_not_use_its_quota() {
    let mut rig = rig(12);
    let down = Memory::new();
    down.refuse_all(Some(Failure::relay("421 4.7.0 Try again later")));
    let up = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig
        .run_on(
            &down,
            Settings {
                relay_name: Some("down".into()),
                relay_quota: quota(100),
                ..settings()
            },
            vec![lane("up", &up, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(up.delivered().len(), 12);
    let today = herald::clock::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(rig.store().quota_used("down", &today).unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_relay_whose_password_is_refused_is_set_aside_and_the_others_carry_on() {
    let mut rig = rig(20);
    let refused = Memory::new();
    refused.fail_connects(
        10_000,
        Failure::config("the relay refused the user name or password (535 5.7.8 no)"),
    );
    let up = Memory::new().with_latency(Duration::from_millis(5));
    let out = rig
        .run_on(
            &refused,
            settings(),
            vec![lane("up", &up, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&up).len(), 20);
    // Tried once per connection, not once per person.
    assert!(refused.connects() <= 3, "{}", refused.connects());
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.sent, c.deferred, c.pending), (20, 0, 0));

    // When it is the only one left, the run stops as for a single relay,
    // naming it, and nobody is lost.
    let mut rig = self::rig(10);
    let other = Memory::new();
    other.fail_connects(10_000, Failure::config("certificate not valid (b)"));
    let out = rig
        .run_on(
            &refused,
            settings(),
            vec![lane("b", &other, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert!(
        matches!(&out.stop, Stop::Fatal(why) if why.contains("535") || why.contains("certificate")),
        "{:?}",
        out.stop
    );
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!((c.pending, c.deferred), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn a_recipients_retry_goes_to_another_relay_when_there_is_one() {
    let mut rig = rig(30);
    let a = Memory::new().with_latency(Duration::from_millis(5));
    let b = Memory::new().with_latency(Duration::from_millis(5));
    // Every third reader is greylisted once at each relay.
    let grey: Vec<String> = (0..30).step_by(3).map(address).collect();
    for who in &grey {
        for relay in [&a, &b] {
            relay.script(
                who,
                [Fault::Refuse(Failure::transient(
                    "451 4.7.1 greylisted, try again later",
                ))],
            );
        }
    }
    let out = rig
        .run_on(
            &a,
            Settings {
                connections: 2,
                ..settings()
            },
            vec![lane("b", &b, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    assert_eq!(out.stop, Stop::Done);
    // Each greylisted reader was tried at one relay, then at the other
    // (which greylisted them too), then at the first again: three
    // attempts, split between the two, never twice in a row at one.
    for who in &grey {
        let (at_a, at_b) = (a.attempt_times(who), b.attempt_times(who));
        assert_eq!(at_a.len() + at_b.len(), 3, "{who}: {at_a:?} {at_b:?}");
        assert!(
            !at_a.is_empty() && !at_b.is_empty(),
            "{who}: {at_a:?} {at_b:?}"
        );
    }
    let mut got = per_recipient(&a);
    for (k, v) in per_recipient(&b) {
        *got.entry(k).or_default() += v;
    }
    assert_eq!(got.len(), 30);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
}

/// Issue 23: a suppression written while the run goes on (here by another
/// connection to the same journal, as `herald serve`, `herald bounces` or
/// `herald suppress add` would) stops that person's mail within 2 seconds.
#[tokio::test(start_paused = true)]
async fn suppressions_written_during_a_run_stop_the_mail_within_two_seconds() {
    let mut rig = rig(60);
    let mailer = Memory::new().with_latency(Duration::from_millis(20));
    let other = store::open(rig._dir.path()).unwrap();
    let start = tokio::time::Instant::now();
    // Ten people unsubscribe at 2 s, ten more at 5 s: all of them later
    // in the list than the throttle has reached by then.
    let writer = tokio::spawn(async move {
        let mut other = other;
        let mut when = std::collections::HashMap::new();
        for (at, range) in [(2u64, 30..40), (5, 45..55)] {
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            let entries: Vec<store::Suppressed> = range
                .map(|i| store::Suppressed {
                    email: address(i),
                    reason: "unsubscribed".into(),
                    source: store::Source::OneClick,
                    campaign: Some(CAMPAIGN.into()),
                    added_at: "2026-12-06T08:00:00Z".into(),
                })
                .collect();
            other.suppress(&entries).unwrap();
            for e in entries {
                when.insert(e.email, tokio::time::Instant::now());
            }
        }
        when
    });
    let out = rig
        .run(
            &mailer,
            Settings {
                rate: Some(Rate::parse("5/s").unwrap()),
                ..settings()
            },
        )
        .await;
    let when = writer.await.unwrap();
    assert_eq!(out.stop, Stop::Done);
    let mut late = Vec::new();
    for d in mailer.delivered() {
        if let Some(at) = when.get(&d.to)
            && d.at > *at + Duration::from_secs(2)
        {
            late.push(format!("{} {:?} after", d.to, d.at - *at));
        }
    }
    assert!(late.is_empty(), "mailed after unsubscribing: {late:?}");
    // Those not mailed are recorded as left out, with why.
    let records = rig.store().recipients(CAMPAIGN).unwrap();
    let skipped: Vec<_> = records
        .iter()
        .filter(|r| r.state == State::Skipped)
        .collect();
    assert!(skipped.len() >= 15, "{} skipped", skipped.len());
    assert!(skipped.iter().all(
        |r| when.contains_key(&r.email) && r.reply.as_deref() == Some(engine::LATE_SUPPRESSION)
    ));
    // Everyone else got exactly one message.
    let got = per_recipient(&mailer);
    assert!(got.values().all(|n| *n == 1));
    assert_eq!(got.len() + skipped.len(), 60);
}

/// Issue 23: a relay that comes back is used again within a second, not
/// after its pause (which grows to 15 s) ends.
#[tokio::test(start_paused = true)]
async fn a_relay_that_is_back_is_used_within_a_second() {
    let mut rig = rig(5);
    let mailer = Memory::new();
    let start = tokio::time::Instant::now();
    let back = start + Duration::from_secs(20);
    mailer.down_until(back, Failure::relay("connection refused (127.0.0.1:2525)"));
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    let first = mailer.delivered().iter().map(|d| d.at).min().unwrap();
    assert!(
        first - back <= Duration::from_secs(1),
        "used again {:?} after it was back",
        first - back
    );
    assert_eq!(per_recipient(&mailer).len(), 5);
}

/// Issue 23: when everyone is settled the run ends, even while another
/// relay is paused after failing (it used to wait the pause out).
#[tokio::test(start_paused = true)]
async fn a_run_whose_recipients_are_all_settled_ends_at_once() {
    let mut rig = rig(40);
    let gone = Memory::new();
    gone.fail_connects(
        10_000,
        Failure::relay("connection refused (127.0.0.1:2526)"),
    );
    let up = Memory::new().with_latency(Duration::from_millis(50));
    let start = tokio::time::Instant::now();
    let out = rig
        .run_on(
            &up,
            settings(),
            vec![lane("gone", &gone, None, 2)],
            Arc::new(AtomicBool::new(false)),
        )
        .await;
    let ended = tokio::time::Instant::now();
    assert_eq!(out.stop, Stop::Done);
    assert_eq!(per_recipient(&up).len(), 40);
    let last = up.delivered().iter().map(|d| d.at).max().unwrap();
    assert!(
        ended - last < Duration::from_millis(200),
        "the last message was answered at {:?}, the run ended at {:?}",
        last - start,
        ended - start
    );
}

/// Issue 23: when the journal cannot record (a full disk), the run stops
/// within 2 seconds as broken, naming the journal; everyone the relay got
/// a message for is recorded as sent or of unknown outcome; a run after
/// the fault is fixed mails nobody twice.
#[tokio::test(start_paused = true)]
async fn when_the_journal_cannot_write_the_run_stops_and_a_rerun_mails_nobody_twice() {
    use crate::faulty::{Failing, Switch};
    let mut rig = rig(300);
    let path = rig.store().describe();
    let switch = Switch::default();
    let inner = rig.store.take().unwrap();
    rig.store = Some(Box::new(Failing::new(inner, switch.clone())));
    let mailer = Memory::new().with_latency(Duration::from_millis(30));
    let start = tokio::time::Instant::now();
    let fails_at = start + Duration::from_millis(500);
    let flip = {
        let switch = switch.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(fails_at).await;
            switch.fail_writes(true);
        })
    };
    let out = rig
        .run(
            &mailer,
            Settings {
                rate: Some(Rate::parse("100/s").unwrap()),
                ..settings()
            },
        )
        .await;
    flip.await.unwrap();
    let ended = tokio::time::Instant::now();
    match &out.stop {
        Stop::Broken(why) => assert!(
            why.contains("cannot record") && why.contains(&path) && why.contains("disk is full"),
            "{why}"
        ),
        other => panic!("expected a broken journal, got {other:?}"),
    }
    assert!(
        ended - fails_at < Duration::from_secs(2),
        "stopped {:?} after the disk filled",
        ended - fails_at
    );
    // Nothing reached the relay that the journal does not know about.
    switch.fail_writes(false);
    let records = rig.store().recipients(CAMPAIGN).unwrap();
    let known: std::collections::HashSet<String> = records
        .iter()
        .filter(|r| matches!(r.state, State::Sent | State::Sending))
        .map(|r| r.email.clone())
        .collect();
    let first = per_recipient(&mailer);
    assert!(
        !first.is_empty() && first.len() < 300,
        "{} mailed",
        first.len()
    );
    let unrecorded: Vec<_> = first.keys().filter(|e| !known.contains(*e)).collect();
    assert!(
        unrecorded.is_empty(),
        "mailed but not recorded: {unrecorded:?}"
    );
    // The fault is fixed: the rest go, nobody twice.
    let out = rig.run(&mailer, settings()).await;
    assert_eq!(out.stop, Stop::Done);
    let all = per_recipient(&mailer);
    let twice: Vec<_> = all.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mailed twice: {twice:?}");
    let c = rig.store().counts(CAMPAIGN).unwrap();
    assert_eq!(c.sent + c.unknown, 300);
    // Everyone was mailed, or is of unknown outcome (their mark was on
    // disk when the journal filled: `herald status` lists them).
    assert!(all.len() as i64 >= c.sent);
}

/// A rate's window is kept across runs in the journal's wall time; on
/// tokio's paused clock that wall time must follow the paused clock. Here
/// the machine takes 1.2 s of real time between two runs while the relay's
/// clock stands still: the second run must still wait out the first one's
/// second. (With the system clock the marks looked 1.2 s old, were
/// forgotten, and six messages went out in one second: the lifecycle
/// test's rare failure on a loaded machine.)
#[tokio::test(start_paused = true)]
async fn a_rate_holds_across_runs_however_long_the_machine_takes_between_them() {
    let mut rig = rig(12);
    let mailer = Memory::new().with_latency(Duration::from_millis(10));
    let rate = Rate::parse("3/s").unwrap();
    let limited = || Settings {
        connections: 2,
        rate: Some(rate),
        max_per_run: Some(3),
        ..settings()
    };
    let out = rig.run(&mailer, limited()).await;
    assert_eq!(out.handed_over, 3);
    std::thread::sleep(Duration::from_millis(1200));
    let out = rig.run(&mailer, limited()).await;
    assert_eq!(out.handed_over, 3);
    let at: Vec<_> = mailer.delivered().into_iter().map(|d| d.at).collect();
    assert_eq!(at.len(), 6);
    assert_within(at, rate, "two runs with real time between them");
}
