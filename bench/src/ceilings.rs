//! The machine's own ceilings, to read the registries' figures against.

use std::time::Instant;

use anyhow::Result;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUF: usize = 1 << 20;

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

/// A plain tokio TCP copy of `total` bytes over 127.0.0.1, writer and reader in tasks.
pub async fn loopback_copy(total: u64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; BUF];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                break;
            }
            n += r as u64;
        }
        anyhow::Ok(n)
    });
    let mut w = TcpStream::connect(addr).await?;
    let buf = vec![7u8; BUF];
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut done = 0u64;
        while done < total {
            w.write_all(&buf).await?;
            done += BUF as u64;
        }
        w.shutdown().await?;
        anyhow::Ok(done)
    });
    let sent = writer.await??;
    let got = reader.await??;
    anyhow::ensure!(
        sent == got,
        "loopback copy: sent {sent} bytes, received {got}"
    );
    Ok(mb_per_s(got, start.elapsed().as_secs_f64()))
}
