//! The journal's rules that do not depend on SQL, in one place: both
//! backends write their statements from these, so SQLite and PostgreSQL
//! cannot drift apart on what a state means.

use super::{Counts, State, Update};

/// Who a run mails: those not mailed yet and those deferred; with
/// `--resend-unknown`, also those left `sending` by a run that died.
pub fn queued(resend_unknown: bool) -> &'static [State] {
    if resend_unknown {
        &[State::Pending, State::Deferred, State::Sending]
    } else {
        &[State::Pending, State::Deferred]
    }
}

/// Who needs attention in `herald status`: failed, deferred, unknown.
pub const PROBLEMS: [State; 3] = [State::Failed, State::Deferred, State::Sending];

/// Left out before being mailed (taken off the list, or skipped): listed
/// again, they are pending once more.
pub const LISTED_AGAIN: [State; 2] = [State::Removed, State::Skipped];

/// Not mailed: someone who must be left out now (unsubscribed, bounced,
/// suppressed) in one of these states becomes `skipped`; those already
/// mailed keep their state.
pub const SKIPPABLE: [State; 3] = [State::Pending, State::Deferred, State::Removed];

/// Not mailed and no longer on the list: `removed` at the end of an import.
pub const REMOVABLE: [State; 2] = [State::Pending, State::Deferred];

/// The reply recorded for someone taken off the list.
pub const REMOVED_REPLY: &str = "removed from the list";

/// The reason recorded when a refusal while sending suppresses someone
/// and the server gave no reply.
pub const REFUSED: &str = "refused";

/// States as a SQL list, `'pending', 'deferred'` (the same in both
/// dialects; the names are herald's own, never user input).
pub fn sql(states: &[State]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Counts {
    /// Nobody is left to mail: nobody pending, deferred or of unknown
    /// outcome. Such a campaign is marked finished.
    pub fn is_done(&self) -> bool {
        self.pending == 0 && self.deferred == 0 && self.unknown == 0
    }
}

impl Update {
    /// Why a refusal put the address on the suppression list: the
    /// server's reply.
    pub fn suppression_reason(&self) -> &str {
        self.reply.as_deref().unwrap_or(REFUSED)
    }
}

/// Updates to the same recipient in one group commit, merged in order: the
/// last state, the last reply given, the attempts added up (one statement
/// cannot update a row twice).
pub fn merge_updates(updates: &[Update]) -> Vec<Update> {
    let mut out: Vec<Update> = Vec::with_capacity(updates.len());
    let mut at: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for u in updates {
        match at.get(&u.seq) {
            Some(&i) => {
                let m = &mut out[i];
                m.state = u.state;
                if u.reply.is_some() {
                    m.reply = u.reply.clone();
                }
                if u.relay.is_some() {
                    m.relay = u.relay.clone();
                }
                m.attempts += u.attempts;
            }
            None => {
                at.insert(u.seq, out.len());
                out.push(u.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_lists_name_the_states_as_stored() {
        assert_eq!(sql(queued(false)), "'pending', 'deferred'");
        assert_eq!(sql(queued(true)), "'pending', 'deferred', 'sending'");
        assert_eq!(sql(&PROBLEMS), "'failed', 'deferred', 'sending'");
        assert_eq!(sql(&LISTED_AGAIN), "'removed', 'skipped'");
        assert_eq!(sql(&SKIPPABLE), "'pending', 'deferred', 'removed'");
    }

    #[test]
    fn updates_to_one_recipient_merge_into_the_last_state() {
        let u = |state, reply: Option<&str>| Update {
            seq: 7,
            state,
            reply: reply.map(Into::into),
            attempts: 1,
            suppress: None,
            relay: None,
        };
        let m = merge_updates(&[
            u(State::Sending, None),
            u(State::Deferred, Some("451 later")),
            u(State::Sending, None),
        ]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].state, State::Sending);
        assert_eq!(m[0].reply.as_deref(), Some("451 later"));
        assert_eq!(m[0].attempts, 3);
    }
}
