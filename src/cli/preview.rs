//! `herald preview POST`: the email as files to open, nothing sent; with
//! `--watch`, served on 127.0.0.1 and made again at every save.

use std::path::{Path, PathBuf};

use super::output::{self, say};
use crate::compose::Issue;
use crate::compose::preview;
use crate::compose::preview::live::{self, Reload};
use crate::config::Config;
use crate::exit;
use crate::findings::Severity;
use crate::{Fault, InputError};

/// Make the email from a post and show it without sending anything: as files, or live in your browser with --watch.
///
/// Writes email.html (what subscribers see), email.txt (the plain-text
/// version), email.mjml (the layout source) and index.html (desktop,
/// phone and text views side by side, and what `herald check` says) into
/// preview/<post-name>/, and
/// PNGs made from the post's SVG pictures into its assets/ folder.
///
/// With --watch nothing is written: the same page, with what `herald check`
/// says about the post, is served at http://127.0.0.1:4800/ (open it in your
/// browser; herald opens nothing by itself). Every time you save the post,
/// herald.yaml or a picture the post shows, the page updates by itself
/// within a second. A post herald cannot read shows the problem and its line
/// at the top until you fix it. Ctrl-C stops it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The post: a Markdown file with the website's front matter.
    post: PathBuf,
    /// Folder to write the files to (default: preview/<post-name>).
    #[arg(long, value_name = "DIR", conflicts_with = "watch")]
    out: Option<PathBuf>,
    /// Serve the preview on this computer and update it at every save,
    /// instead of writing files.
    #[arg(long)]
    watch: bool,
    /// With --watch: the port of the address (127.0.0.1 only). 0 picks a
    /// free one.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT, requires = "watch")]
    port: u16,
    /// Print what was written (with --watch: the address) as JSON.
    #[arg(long)]
    json: bool,
}

/// `--port`'s default: the same address every time, so a browser tab
/// left open reloads by itself when herald is started again.
pub const DEFAULT_PORT: u16 = 4800;

pub fn run(args: Args, config: &Config, reload: Box<Reload>) -> anyhow::Result<i32> {
    if args.watch {
        let settings = super::config_path(config);
        return watch(args, settings, reload);
    }
    keep_freed_memory(&args.post);
    let options = config.compose();
    // Never dropped: freeing the post's content model and the email,
    // piece by piece, just before the process ends was 1.4% of previewing
    // the annual report (296K instructions), for nothing.
    let issue = std::mem::ManuallyDrop::new(Issue::compose(&args.post, &options)?);
    let dir = args
        .out
        .unwrap_or_else(|| Path::new("preview").join(issue.post.slug()));
    let written = preview::write(&issue, &options, &dir)?;
    let findings = &written.findings;
    if args.json {
        output::json(&serde_json::json!({
            "dir": written.dir,
            "files": written.files,
            "html_bytes": written.html_bytes,
            "text_bytes": written.text_bytes,
            "upload": written.upload,
            "findings": findings,
        }))?;
    } else {
        say!(
            "Wrote the preview of \"{}\" to {}/",
            issue.content.title,
            written.dir.display()
        )?;
        for f in &written.files {
            say!("  {}", f.display())?;
        }
        say!(
            "HTML {:.1} KB, text {:.1} KB. Open {} in a browser to look at it.",
            written.html_bytes as f64 / 1024.0,
            written.text_bytes as f64 / 1024.0,
            written.dir.join("index.html").display()
        )?;
        if !written.upload.is_empty() {
            say!("Upload these pictures before sending; the email loads them from the web:")?;
            for u in &written.upload {
                say!("  {} -> {}", u.file.display(), u.url)?;
            }
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if errors + warnings > 0 {
        tracing::warn!(
            "{errors} error(s), {warnings} warning(s); run `herald check {}` for details",
            args.post.display()
        );
    }
    Ok(exit::OK)
}

/// A preview is one short pass that makes and drops a few strings of
/// 100-200 KB (the HTML at each step, the text, the page). `main` has malloc
/// give every block over 128 KB its own mapping and hand freed memory back
/// at once, which keeps a long send small; here it only made each of those
/// strings fault in fresh pages (a fifth of the preview's page faults, each
/// a few microseconds on a virtual machine). Freed blocks are kept for the
/// next string instead: the process ends in milliseconds either way.
/// `herald check` composes the same way, and keeps it too. A large `post`
/// also gets 2 MB pages for its heap (see [`huge_heap`]).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    allow(unused_variables)
)]
pub(super) fn keep_freed_memory(post: &Path) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's tuning parameters; `herald preview`
    // without --watch starts no thread, nor `herald check` before it composes.
    unsafe {
        // 32 MB is the largest mmap threshold glibc accepts.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        // Zeroing a 2 MB page costs what about 100 faults save: a post of
        // 5 KB (a short newsletter, 75 fewer faults) took 1.05x the
        // task-clock with it, one of 14 KB the same, 43 KB 0.98x, 86 KB
        // 0.92x (`perf stat`, side by side). Unreadable: left to compose.
        if std::fs::metadata(post).is_ok_and(|m| m.len() >= HUGE_HEAP_POST) {
            huge_heap();
        }
    }
}

/// The size of post from which [`huge_heap`] pays.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_HEAP_POST: u64 = 16 << 10;

/// The heap a preview grows into, 2 MB pages rather than 4 KB ones.
///
/// What is left of a preview's page faults after start-up are its heap's
/// fresh pages: about 420 for the 2023 annual report (1.7 MB: mrml's tree,
/// the HTML at each step, the text, the page), each a trap, a zeroed page
/// and its accounting, 1.4 us apiece on this project's virtual machines.
/// The kernel gives a 2 MB-aligned range of a mapping marked
/// MADV_HUGEPAGE one 2 MB page at its first touch instead, when
/// /sys/kernel/mm/transparent_hugepage/enabled says "madvise" or "always"
/// (as on this project's machines; with "never" the mark does nothing and
/// nothing else changes): 385 fewer faults, 0.93x the task-clock of a
/// preview (`perf stat`, side by side).
///
/// malloc's heap grows up from its top, so the top is moved to a 2 MB
/// boundary: one block as large as the room asked for plus the way to the
/// next boundary is taken (extending the heap) and given back, then a
/// spacer is taken from its start up to the boundary and kept (never
/// written but for malloc's header), so the blocks taken next start at the
/// boundary, inside the marked range. If malloc places them elsewhere all
/// the same, only the gain is lost: the memory is ordinary heap either way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe fn huge_heap() {
    const HUGE: usize = 2 << 20;
    /// Two pages: the annual report needs 1.7 MB, a bigger post a little
    /// more; past them the heap grows in 4 KB pages as before.
    const ROOM: usize = 2 * HUGE;
    /// The spacer is at least this large, so a block freed earlier cannot
    /// serve it in place of the top.
    const GAP: usize = 64 << 10;
    // SAFETY: malloc, free and madvise on memory malloc gave; the spacer
    // is never used, only kept, so nothing reads memory it does not own.
    unsafe {
        // black_box: the compiler may drop an allocation nothing reads, and
        // these are made for where they put the heap's top.
        let block = std::hint::black_box(libc::malloc(ROOM + HUGE + GAP));
        if block.is_null() {
            return;
        }
        let from = block as usize;
        let boundary = (from + GAP + HUGE - 1) & !(HUGE - 1);
        libc::free(block);
        // 64 short of the boundary: the spacer's chunk (its 16-byte header
        // included) then ends 64 bytes below it, and the next block starts
        // 48 bytes below it, its header and first bytes in the page before.
        std::hint::black_box(libc::malloc(boundary - from - 64));
        // Within the freed block, so within the heap's mapping. Refused (no
        // transparent huge pages in this kernel): the heap stays as it was.
        libc::madvise(boundary as *mut libc::c_void, ROOM, libc::MADV_HUGEPAGE);
    }
}

/// `--watch`: serves the preview until Ctrl-C or SIGTERM.
fn watch(args: Args, settings: PathBuf, reload: Box<Reload>) -> anyhow::Result<i32> {
    if !args.post.is_file() {
        return Err(InputError::new(
            &args.post,
            None,
            "there is no such file; give the path of the post's Markdown file",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fault::io("start the preview server", &e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| {
                InputError::at(
                    "--port",
                    format!(
                        "cannot listen on 127.0.0.1:{} ({e}). Is another preview running? \
                         Stop it, or choose another port with --port (0 picks a free one)",
                        args.port
                    ),
                )
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Fault::io("read the listening address", &e))?;
        // The first render happens here, so the page is ready when the
        // address is printed.
        let watch =
            tokio::task::block_in_place(|| live::Watch::start(args.post.clone(), settings, reload));
        let url = format!("http://{bound}/");
        if args.json {
            output::line(format_args!(
                "{}",
                serde_json::json!({ "url": url, "post": args.post })
            ))?;
        } else {
            say!("Preview at {url}")?;
        }
        tracing::info!(
            "watching {} and the settings; Ctrl-C stops",
            args.post.display()
        );
        live::serve(listener, watch, super::serve::stop_signal()).await;
        anyhow::Ok(())
    })?;
    tracing::info!("stopped");
    Ok(exit::OK)
}
