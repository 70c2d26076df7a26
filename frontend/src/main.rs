//! The squash-frontend binary.
//!
//! Started by BuildKit as a frontend (the `# syntax=` image), it speaks the gateway API on
//! stdin/stdout: stdout is the gRPC wire, so nothing here may print to it; logs go to stderr
//! (which BuildKit sends to the daemon's log). The same binary also runs inside the build it
//! emits, as `squash-frontend sync FINAL BASE`, to compute the squashed layer.

use std::ffi::OsString;
use std::process::ExitCode;

use squash_frontend::{flow, gateway, request, scan, version};

const USAGE: &str =
    "usage: squash-frontend            (run by BuildKit as a frontend, gRPC on stdio)
       squash-frontend sync FINAL BASE   (make the tree BASE equal to FINAL)
       squash-frontend inspect FINAL     (check FINAL for what no image layer can hold)";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("sync") => sync(&args[1..]),
        Some("inspect") => inspect(&args[1..]),
        Some("--version") => {
            // Stdout is the gRPC wire only when BuildKit starts us, which it does with no
            // argument.
            println!("{}", version::describe());
            ExitCode::SUCCESS
        }
        Some(_) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        None => frontend(),
    }
}

fn frontend() -> ExitCode {
    let env = || {
        std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
    };
    let start = request::Start {
        opts: request::opts_from_env(env()),
        session_id: std::env::var("BUILDKIT_SESSION_ID").unwrap_or_default(),
        tool_def: std::fs::read("/run/config/buildkit/metadata/frontend.bin").ok(),
        exe: std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/bin/squash-frontend".into()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("squash-frontend: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The pipes must be registered with the runtime's reactor, so they are opened inside it.
    let started = std::time::Instant::now();
    let code = runtime.block_on(async { flow::run(gateway::stdio(), start).await });
    // One line in the daemon's log per run: what the benchmarks read for time and memory.
    eprintln!(
        "squash-frontend: exit {code} after {} ms, peak RSS {} KiB",
        started.elapsed().as_millis(),
        peak_rss_kib().unwrap_or(0)
    );
    // Exit at once: BuildKit waits for the process, and tokio's stdin thread would otherwise
    // keep the runtime from shutting down.
    std::process::exit(code)
}

/// The process's peak resident set size (`VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The in-build `inspect` step: fails with [`scan::EXIT_UNREPRESENTABLE`] when the finished
/// tree holds what no image layer can hold, naming it.
fn inspect(args: &[OsString]) -> ExitCode {
    let [final_dir] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    check(final_dir.as_ref()).unwrap_or(ExitCode::SUCCESS)
}

/// The exit code to stop with, if `final_dir` cannot be squashed (said on stderr, which BuildKit
/// shows as the step's output).
fn check(final_dir: &std::path::Path) -> Option<ExitCode> {
    match scan::reserved_names(final_dir) {
        Ok(reserved) => scan::refusal(&reserved).map(|why| {
            eprintln!("squash-frontend: {why}");
            ExitCode::from(scan::EXIT_UNREPRESENTABLE)
        }),
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// The in-build step: makes the tree at BASE equal to the one at FINAL, touching only what
/// differs (see the `treesync` crate), and says what it changed.
fn sync(args: &[OsString]) -> ExitCode {
    let [final_dir, base_dir] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if let Some(stop) = check(final_dir.as_ref()) {
        return stop;
    }
    // The changes of BASE become the squashed layer, through BuildKit's layer differ.
    let options = treesync::SyncOptions {
        for_layer_differ: true,
        ..Default::default()
    };
    match treesync::sync_tree(final_dir.as_ref(), base_dir.as_ref(), &options) {
        Ok(stats) => {
            eprintln!("squash-frontend sync: {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("squash-frontend sync: {e}");
            ExitCode::FAILURE
        }
    }
}
