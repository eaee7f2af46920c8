//! Blob bytes served as read-only mappings of the page cache.
//!
//! A large download hands hyper `Bytes` that point into a mapping of the blob
//! file instead of a copy of it: the socket write is then the only copy on
//! the server's side (a read into a buffer costs a second one, and zeroing
//! the buffer a third pass over memory).

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

/// One mapped window of a blob file, with the file kept open beside it.
struct Window {
    map: memmap2::Mmap,
    _file: Arc<File>,
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// `len` bytes of `file` from `offset`, mapped, with the pages resident.
///
/// The file must not change while mapped: berth's blob files never do (they
/// are written once, fsynced and renamed into place, and only ever removed by
/// unlink, which keeps mapped pages valid). The caller checks that the window
/// lies within the file.
pub fn map_window(file: &Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
    // SAFETY: see above: the mapped bytes cannot change or vanish while the
    // mapping lives.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(&**file)?
    };
    // Fault the pages in here, on the caller's (blocking) thread: a disk error
    // becomes an error of this download instead of a SIGBUS in whatever
    // touches the mapping later, and the socket writer never waits on disk.
    match map.advise(memmap2::Advice::PopulateRead) {
        Ok(()) => Ok(Bytes::from_owner(Window {
            map,
            _file: file.clone(),
        })),
        // Kernels before 5.14 lack MADV_POPULATE_READ: copy the window instead.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            drop(map);
            let mut buf = vec![0u8; len];
            std::os::unix::fs::FileExt::read_exact_at(&**file, &mut buf, offset)?;
            Ok(Bytes::from(buf))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_window_holds_the_bytes_of_its_range() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let file = Arc::new(f);
        // Offsets need not be page-aligned.
        let bytes = map_window(&file, 4096 + 7, 2 * 4096 + 50).unwrap();
        assert_eq!(&bytes[..], &data[4096 + 7..3 * 4096 + 57]);
        // The mapping outlives the caller's handle on the file.
        drop(file);
        assert_eq!(bytes[0], data[4096 + 7]);
    }

    #[test]
    fn a_window_past_the_end_of_the_file_is_an_error_not_a_crash() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 100]).unwrap();
        let file = Arc::new(f);
        assert!(map_window(&file, 0, 3 * 4096).is_err());
    }
}
