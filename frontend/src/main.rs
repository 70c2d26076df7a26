//! The squash-frontend binary.
//!
//! Started by BuildKit as a frontend (the `# syntax=` image), it speaks the gateway API on
//! stdin/stdout: stdout is the gRPC wire, so nothing here may print to it; logs go to stderr
//! (which BuildKit sends to the daemon's log). The same binary also runs inside the build it
//! emits, as `squash-frontend sync FINAL BASE` and the other in-build steps ([`steps`]).

use std::ffi::OsString;
use std::process::ExitCode;

use squash_frontend::{flow, gateway, request, steps, version};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("sync") => steps::sync(&args[1..]),
        Some("inspect") => steps::inspect(&args[1..]),
        Some("account") => steps::account(&args[1..]),
        Some("--version") => {
            // Stdout is the gRPC wire only when BuildKit starts us, which it does with no
            // argument.
            println!("{}", version::describe());
            ExitCode::SUCCESS
        }
        Some(_) => steps::usage(),
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
        steps::peak_rss_kib().unwrap_or(0)
    );
    // Exit at once: BuildKit waits for the process, and tokio's stdin thread would otherwise
    // keep the runtime from shutting down.
    std::process::exit(code)
}
