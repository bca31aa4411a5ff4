//! The control socket's server: one request line in, one response line out, per connection.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::context::{Context, QueryError};
use super::protocol::{Request, Response};

/// Binds the control socket (removing a stale one left by a process that is gone).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match UnixStream::connect(path) {
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another appliance answers there (give this one its own [control] socket)", path.display()),
            ))
        }
        Err(_) => {
            let _ = std::fs::remove_file(path);
        }
    }
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Answers requests until one of `stops` is set, then removes the socket file.
pub fn serve(listener: UnixListener, path: PathBuf, ctx: &Context<'_>, stops: &[&AtomicBool]) {
    while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
        match listener.accept() {
            Ok((s, _)) => {
                if let Err(e) = answer_one(s, ctx) {
                    tracing::debug!(error = %e, "control request");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(error = %e, "control socket");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn answer_one(s: UnixStream, ctx: &Context<'_>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let answer = match Request::parse(line.trim()) {
        Ok(req) => answer(ctx, &req).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut out = serde_json::to_vec(&Response::new(answer)).map_err(io::Error::other)?;
    out.push(b'\n');
    (&s).write_all(&out)
}

/// The data of the response to `req`.
fn answer(ctx: &Context<'_>, req: &Request) -> Result<serde_json::Value, QueryError> {
    Ok(match req {
        Request::Status => serde_json::to_value(ctx.status())?,
        Request::Listeners => serde_json::to_value(ctx.listeners()?)?,
        Request::Conns { limit } => serde_json::to_value(ctx.conns(*limit)?)?,
        Request::Stats => serde_json::to_value(ctx.stats()?)?,
        Request::Capture { capture } => serde_json::to_value(ctx.capture(capture)?)?,
    })
}
