//! Writes the man pages and shell completions the Debian package ships,
//! from the CLI definition itself (so they say what `--help` says):
//!
//!     cargo run --release --example gen_assets -- OUT_DIR
//!
//! OUT_DIR/man/herald.1, herald-send.1, herald-suppress-add.1 ... (one per
//! command, nested ones too) and OUT_DIR/completions/{herald.bash, _herald,
//! herald.fish}. scripts/build-deb.sh puts them where Debian looks.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen_assets OUT_DIR");
        std::process::exit(2);
    };
    let mut cli = herald::cli::Cli::command();
    cli.build();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let mut pages = 0;
    write_pages(&cli, "herald", &man, &mut pages)?;
    let comp = out.join("completions");
    std::fs::create_dir_all(&comp)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut herald::cli::Cli::command(), "herald", &comp)?;
    }
    eprintln!(
        "wrote {pages} man pages to {} and completions to {}",
        man.display(),
        comp.display()
    );
    Ok(())
}

/// One page for `cmd`, named `name` (herald-suppress-add), then its subcommands.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    pages: &mut usize,
) -> std::io::Result<()> {
    // The page's title is the full command, as `man herald-send` shows it.
    // clap takes static names here (no `string` feature); this program runs
    // once and writes a few dozen pages, so leaking them costs nothing.
    let static_name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let shown: &'static str = Box::leak(name.replace('-', " ").into_boxed_str());
    let titled = cmd.clone().name(static_name).display_name(shown);
    let mut buf = Vec::new();
    clap_mangen::Man::new(titled).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    *pages += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, pages)?;
    }
    Ok(())
}
