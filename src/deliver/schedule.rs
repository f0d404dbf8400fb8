//! `herald send --due DIR`: which posts' time has come.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::InputError;
use crate::compose::post;

/// Posts older than this are the archive, not a missed send.
pub const HISTORY: Duration = Duration::from_secs(31 * 86400);

pub struct Due {
    /// Posts to send now, oldest first.
    pub ready: Vec<PathBuf>,
    /// Posts whose time passed longer ago than the grace period, but less
    /// than [`HISTORY`] ago; older ones are history and ignored quietly.
    pub late: Vec<(PathBuf, Timestamp)>,
    /// Posts herald cannot read (a broken front matter, a `send_at` that
    /// is not a date): nobody can tell whether they are due, so the run
    /// says so as an error (exit 2) while the others go out.
    pub unreadable: Vec<InputError>,
}

/// The posts in `dir` whose `send_at` (or else `date`) has come. A post
/// that cannot be read is left out and listed in [`Due::unreadable`]: one
/// bad draft must not stop this month's issue, and a broken issue must not
/// look like "nothing due" under cron.
pub fn due_posts(
    dir: &Path,
    now: Timestamp,
    grace: Duration,
    late_ok: bool,
) -> Result<Due, InputError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        InputError::new(dir, None, format!("cannot read the folder of posts ({e})"))
    })?;
    let mut ready: Vec<(Timestamp, PathBuf)> = Vec::new();
    let mut late = Vec::new();
    let mut unreadable = Vec::new();
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("md") {
            continue;
        }
        let post = match post::load(&path) {
            Ok(p) => p,
            Err(err) => {
                unreadable.push(err);
                continue;
            }
        };
        let Some(when) = post.front_matter.send_at.or(post.front_matter.date) else {
            continue;
        };
        if when > now || post.front_matter.hidden {
            continue;
        }
        let age = now.duration_since(when);
        let history = jiff::SignedDuration::try_from(HISTORY).unwrap_or(jiff::SignedDuration::MAX);
        if age > grace && !late_ok {
            if age <= history {
                late.push((path, when));
            }
        } else if age > history && late_ok {
            continue;
        } else {
            ready.push((when, path));
        }
    }
    ready.sort();
    Ok(Due {
        ready: ready.into_iter().map(|(_, p)| p).collect(),
        late,
        unreadable,
    })
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}
