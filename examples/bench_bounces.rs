//! How fast `listen::bounces::classify` reads bounces, on one thread: the
//! real bounces of `../shared/bounces/mail` (or the folder given) read
//! into memory and classified round and round until 10,000 are done.
//!
//!     cargo run --release --example bench_bounces [-- DIR [COUNT]]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bounces/mail").to_string()
    });
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let mut mails = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir}: {e}")) {
        let path = entry.expect("a folder entry").path();
        if path.is_file() {
            mails.push(std::fs::read(&path).expect("a readable file"));
        }
    }
    assert!(!mails.is_empty(), "no messages in {dir}");
    let bytes: usize = mails.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut recipients = 0;
    for i in 0..count {
        let report = herald::listen::bounces::classify(&mails[i % mails.len()]);
        recipients += report.recipients.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} messages ({} distinct, {} KB) in {secs:.2} s: {:.0} messages/s on one thread ({recipients} recipients)",
        mails.len(),
        bytes / 1024,
        count as f64 / secs
    );
}
