//! The builder starts several batches ahead and hands them over in the
//! queue's order: what arrives, and how many under `--max-per-run`, must
//! be exactly what one batch at a time gave.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use herald::deliver::engine::{Outcome, Stop};
use herald::deliver::memory::Memory;
use herald::store::State;

use crate::engine::{CAMPAIGN, Rig, Settings, address, rig_of};

/// 100 people; every seventh cannot be mailed (lettre refuses an address
/// with a space), so the batches hold failures among the messages.
fn people() -> Vec<String> {
    (0..100)
        .map(|i| match i % 7 {
            3 => format!("reader {i}@example.org"),
            _ => address(i),
        })
        .collect()
}

async fn run(rig: &mut Rig, mailer: &Memory, settings: &Settings) -> Outcome {
    rig.run_with(mailer, settings.clone(), Arc::new(AtomicBool::new(false)))
        .await
}

#[tokio::test(start_paused = true)]
async fn batches_built_ahead_arrive_in_list_order_and_the_limit_counts_only_messages() {
    let people = people();
    let mailable: Vec<String> = people
        .iter()
        .filter(|a| !a.contains(' '))
        .cloned()
        .collect();
    let mut rig = rig_of(people.clone());
    let mailer = Memory::new();
    // One connection: the order delivered is the order handed over.
    let slice = Settings {
        connections: 1,
        max_per_run: Some(37),
        ..Settings::default()
    };
    let first = run(&mut rig, &mailer, &slice).await;
    assert_eq!((first.stop, first.handed_over), (Stop::Limit, 37));
    let delivered = || -> Vec<String> { mailer.delivered().into_iter().map(|d| d.to).collect() };
    assert_eq!(delivered(), mailable[..37]);

    let mut runs = 1;
    while run(&mut rig, &mailer, &slice).await.stop == Stop::Limit {
        runs += 1;
        assert!(runs < 5, "the list should be done in three runs");
    }
    assert_eq!(delivered(), mailable, "each once, in the list's order");
    let failed: Vec<String> = rig
        .store()
        .problems(CAMPAIGN, i64::MAX)
        .unwrap()
        .into_iter()
        .filter(|p| p.state == State::Failed)
        .map(|p| p.email)
        .collect();
    assert_eq!(failed.len(), people.len() - mailable.len(), "{failed:?}");
    assert!(failed.iter().all(|a| a.contains(' ')), "{failed:?}");
}
