//! Each client's request budget: a token bucket per address (429 with
//! `Retry-After` when it is spent). Only bad links, page views and other
//! methods spend it; a POST with a good token never does (see `mod.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::App;

/// A token bucket per client: `per_minute` requests a minute, and up to a
/// quarter of that at once.
pub(super) struct Budgets {
    per_minute: u32,
    clients: HashMap<IpAddr, (f64, Instant)>,
}

/// The most clients remembered; past it, those with a full budget are
/// forgotten (they lose nothing), and if all are busy, all are.
const MAX_CLIENTS: usize = 100_000;

impl Budgets {
    pub(super) fn new(per_minute: u32) -> Budgets {
        Budgets {
            per_minute: per_minute.max(1),
            clients: HashMap::new(),
        }
    }

    fn capacity(&self) -> f64 {
        (f64::from(self.per_minute) / 4.0).max(5.0)
    }

    /// `Err(seconds)`: the client has to wait this long.
    fn take(&mut self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let capacity = self.capacity();
        let rate = f64::from(self.per_minute) / 60.0;
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&client) {
            self.clients.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < capacity
            });
            if self.clients.len() >= MAX_CLIENTS {
                self.clients.clear();
            }
        }
        let (tokens, at) = self.clients.entry(client).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

impl App {
    /// Counts the request against its client's budget; the 429 answer if
    /// over.
    pub(super) fn over_budget(&self, client: IpAddr) -> Option<Response> {
        let wait = {
            let mut b = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
            b.take(client, Instant::now()).err()?
        };
        self.counters.limited.fetch_add(1, Ordering::Relaxed);
        let mut r = self.page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "<p>Please wait a minute and try again.</p>",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn budgets_refill_and_say_how_long_to_wait() {
        let mut b = Budgets::new(60);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..15 {
            assert!(b.take(ip, t).is_ok());
        }
        assert_eq!(b.take(ip, t), Err(1));
        // Another client has its own budget.
        assert!(b.take("192.0.2.2".parse().unwrap(), t).is_ok());
        // A second later, one more.
        assert!(b.take(ip, t + Duration::from_secs(1)).is_ok());
    }
}
