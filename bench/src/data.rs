//! Deterministic pseudo-random blob contents, generated on the fly.
//!
//! A blob is never held in memory: its bytes are slices of one shared pool of random
//! bytes, picked per 1 MiB block by a hash of (seed, block index), behind a 32-byte
//! header that makes every (seed, length) pair distinct. Slicing a `Bytes` is
//! zero-copy, so feeding a request body costs the client almost no CPU, and the same
//! blob can be regenerated (for its digest, or one range of it) at any time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};

const BLOCK: u64 = 1 << 20;
const HEADER: u64 = 32;

/// Identity of one generated blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobSpec {
    pub seed: u64,
    pub len: u64,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    let mut s = a ^ b.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    splitmix64(&mut s)
}

/// The shared random pool plus a cache of the digests already computed.
#[derive(Clone)]
pub struct Pool {
    bytes: Bytes,
    digests: Arc<Mutex<HashMap<BlobSpec, String>>>,
}

impl Pool {
    /// `len` must be at least 2 MiB.
    pub fn new(len: usize) -> Pool {
        assert!(len as u64 >= 2 * BLOCK);
        let mut v = Vec::with_capacity(len + 8);
        let mut s = 0x0123_4567_89AB_CDEF_u64;
        while v.len() < len {
            v.extend_from_slice(&splitmix64(&mut s).to_le_bytes());
        }
        v.truncate(len);
        Pool {
            bytes: Bytes::from(v),
            digests: Arc::default(),
        }
    }

    fn header(spec: BlobSpec) -> [u8; HEADER as usize] {
        let mut h = [0u8; HEADER as usize];
        h[0..8].copy_from_slice(b"bbench01");
        h[8..16].copy_from_slice(&spec.seed.to_le_bytes());
        h[16..24].copy_from_slice(&spec.len.to_le_bytes());
        h[24..32].copy_from_slice(&mix(spec.seed, spec.len).to_le_bytes());
        h
    }

    /// The bytes of `spec` starting at `pos`: at most one block, never past `end`.
    pub fn chunk(&self, spec: BlobSpec, pos: u64, end: u64) -> Bytes {
        debug_assert!(pos < end && end <= spec.len);
        if pos < HEADER {
            let h = Self::header(spec);
            return Bytes::copy_from_slice(&h[pos as usize..end.min(HEADER) as usize]);
        }
        let block = pos / BLOCK;
        let within = pos % BLOCK;
        let n = (BLOCK - within).min(end - pos);
        let span = self.bytes.len() as u64 - BLOCK;
        let off = mix(spec.seed, block) % (span + 1);
        let start = (off + within) as usize;
        self.bytes.slice(start..start + n as usize)
    }

    /// A request body streaming bytes `start..end` of `spec`.
    pub fn body(&self, spec: BlobSpec, start: u64, end: u64) -> GenBody {
        GenBody {
            pool: self.clone(),
            spec,
            pos: start,
            end,
        }
    }

    /// `sha256:<hex>` of the whole blob, computed once by a streaming pass.
    pub fn digest(&self, spec: BlobSpec) -> String {
        if let Some(d) = self.digests.lock().unwrap().get(&spec) {
            return d.clone();
        }
        let mut h = Sha256::new();
        let mut pos = 0;
        while pos < spec.len {
            let c = self.chunk(spec, pos, spec.len);
            h.update(&c);
            pos += c.len() as u64;
        }
        let d = format!("sha256:{:x}", h.finalize());
        self.digests.lock().unwrap().insert(spec, d.clone());
        d
    }

    /// Small deterministic bytes (not from the pool) for tiny blobs.
    pub fn small(seed: u64, len: usize) -> Bytes {
        let mut v = Vec::with_capacity(len + 8);
        let mut s = seed;
        while v.len() < len {
            v.extend_from_slice(&splitmix64(&mut s).to_le_bytes());
        }
        v.truncate(len);
        Bytes::from(v)
    }
}

/// Streaming body over a range of a generated blob; reports its exact length.
pub struct GenBody {
    pool: Pool,
    spec: BlobSpec,
    pos: u64,
    end: u64,
}

impl Body for GenBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let c = self.pool.chunk(self.spec, self.pos, self.end);
        self.pos += c.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}

/// Every request body the bench sends.
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    Gen(GenBody),
}

impl ReqBody {
    pub fn full(b: Bytes) -> ReqBody {
        ReqBody::Full(Some(b))
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Gen(g) => Pin::new(g).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Gen(g) => g.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Gen(g) => g.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_concatenate_to_the_whole_blob() {
        let pool = Pool::new(4 << 20);
        let spec = BlobSpec {
            seed: 7,
            len: 3 * BLOCK + 12345,
        };
        let collect = |start: u64, end: u64| {
            let mut out = Vec::new();
            let mut pos = start;
            while pos < end {
                let c = pool.chunk(spec, pos, end);
                pos += c.len() as u64;
                out.extend_from_slice(&c);
            }
            out
        };
        let whole = collect(0, spec.len);
        assert_eq!(whole.len() as u64, spec.len);
        let mut parts = collect(0, 10);
        parts.extend(collect(10, BLOCK + 3));
        parts.extend(collect(BLOCK + 3, spec.len));
        assert_eq!(whole, parts);
        let d = format!("sha256:{:x}", Sha256::digest(&whole));
        assert_eq!(pool.digest(spec), d);
    }

    #[test]
    fn distinct_seeds_give_distinct_digests() {
        let pool = Pool::new(2 << 20);
        let a = pool.digest(BlobSpec { seed: 1, len: 100 });
        let b = pool.digest(BlobSpec { seed: 2, len: 100 });
        assert_ne!(a, b);
    }
}
