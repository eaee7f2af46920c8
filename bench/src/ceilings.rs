//! The machine's own ceilings, to read the registries' figures against.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use sha2::{Digest as _, Sha256};

use crate::framework::median;

const BUF: usize = 1 << 20;
/// Each ceiling is the median of this many measurements.
const TRIES: usize = 3;

/// What this machine does at best, measured in the same run as the registries.
#[derive(Clone, Copy)]
pub struct Ceilings {
    /// SHA-256 (the `sha2` crate) on one core, MB/s.
    pub sha256: f64,
    /// A plain copy of a file of the big blob's size, from the page cache to a
    /// reader over loopback TCP (`read` 1 MiB, `write` it; the reader reads
    /// 1 MiB at a time), MB/s: a pull with no HTTP and no registry.
    pub loopback_file: f64,
    /// A loopback TCP copy of as many bytes resent from one cache-resident
    /// 1 MiB buffer, MB/s: the transport alone, without reading any memory.
    pub loopback_cached: f64,
    /// Writing the big blob's size to a file in the registries' temporary
    /// directory and fsyncing it, MB/s: what a durable push can reach.
    pub durable_write: f64,
}

pub async fn measure(total: u64, dir: &Path) -> Result<Ceilings> {
    let source: Arc<Vec<u8>> = Arc::new(
        (0..total as usize)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    let mut sha = Vec::new();
    let mut file_copy = Vec::new();
    let mut cached = Vec::new();
    let mut disk = Vec::new();
    for _ in 0..TRIES {
        sha.push(tokio::task::spawn_blocking(move || sha256_one_core(total)).await?);
        cached.push(tokio::task::spawn_blocking(move || loopback_cached(total)).await??);
        let (dir, src) = (dir.to_path_buf(), source.clone());
        let (rate, file) = tokio::task::spawn_blocking(move || durable_write(&dir, &src)).await??;
        disk.push(rate);
        // The file just written is in the page cache, as a pushed blob is.
        file_copy.push(tokio::task::spawn_blocking(move || loopback_file(file)).await??);
    }
    Ok(Ceilings {
        sha256: median(sha),
        loopback_file: median(file_copy),
        loopback_cached: median(cached),
        durable_write: median(disk),
    })
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// SHA-256 (the `sha2` crate) on one core over `total` bytes of a repeated 1 MiB buffer.
pub fn sha256_one_core(total: u64) -> f64 {
    let buf: Vec<u8> = (0..BUF)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut h = Sha256::new();
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        h.update(&buf);
        done += BUF as u64;
    }
    std::hint::black_box(h.finalize());
    mb_per_s(done, start.elapsed().as_secs_f64())
}

/// Reads everything from `stream` 1 MiB at a time, on a thread; the count.
fn drain(listener: TcpListener) -> std::thread::JoinHandle<io::Result<u64>> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; BUF];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                r => n += r as u64,
            }
        }
    })
}

/// Copies `total` bytes over 127.0.0.1, resending one 1 MiB buffer.
fn loopback_cached(total: u64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut w = TcpStream::connect(listener.local_addr()?)?;
    let reader = drain(listener);
    let buf = vec![7u8; BUF];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        w.write_all(&buf)?;
        sent += BUF as u64;
    }
    w.shutdown(Shutdown::Write)?;
    finish(reader, sent, start)
}

/// Copies the whole of `file` over 127.0.0.1: `read` 1 MiB, `write` it.
fn loopback_file(mut file: File) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut w = TcpStream::connect(listener.local_addr()?)?;
    let reader = drain(listener);
    let mut buf = vec![0u8; BUF];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => {
                w.write_all(&buf[..n])?;
                sent += n as u64;
            }
        }
    }
    w.shutdown(Shutdown::Write)?;
    finish(reader, sent, start)
}

fn finish(
    reader: std::thread::JoinHandle<io::Result<u64>>,
    sent: u64,
    start: Instant,
) -> Result<f64> {
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))??;
    anyhow::ensure!(
        sent == got,
        "loopback copy: sent {sent} bytes, received {got}"
    );
    Ok(mb_per_s(got, start.elapsed().as_secs_f64()))
}

/// Writes `source` to a new file in `dir` in 1 MiB writes, then fsyncs it.
/// The file, reopened for reading; it is removed already.
fn durable_write(dir: &Path, source: &[u8]) -> Result<(f64, File)> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    let start = Instant::now();
    for chunk in source.chunks(BUF) {
        file.write_all(chunk)?;
    }
    file.as_file().sync_all()?;
    let rate = mb_per_s(source.len() as u64, start.elapsed().as_secs_f64());
    let reread = file.reopen()?;
    Ok((rate, reread))
}
