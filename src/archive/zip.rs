//! A deterministic zip writer with parallel per-entry DEFLATE.
//!
//! Written by hand because the `zip` crate compresses inside its writer, one entry at a time;
//! it cannot take entries compressed elsewhere, so it cannot compress in parallel. The format
//! needed here is small: local headers, data, central directory, end record (+ zip64 end
//! records when there are more than 65,535 entries).
//!
//! Determinism: entries are written in the order given (callers sort them), every timestamp is
//! 1980-01-01 00:00, the Unix mode is stored in the external attributes (0644/0755), names are
//! flagged UTF-8, and no extra fields are written. The same entries and compression level
//! give the same bytes.
//!
//! Level 0 (STORED, what Ray itself writes) has a faster path, [`write_stored_file`]: with the
//! sizes and CRCs known from the hashing pass, every entry's offset is known up front and the
//! bytes are copied by the kernel (`copy_file_range`, via `std::io::copy`) without a second
//! read through this process. Both paths give the same bytes for the same entries.

use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::collect::{CopyRun, CopySink, Hashes};
use crate::sha256_lanes;

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Name inside the archive ('/'-separated, no leading '/').
    pub name: String,
    /// Where the bytes come from.
    pub source: PathBuf,
    /// Unix permission bits (e.g. 0o644).
    pub mode: u32,
    pub size: u64,
    /// CRC-32 of the bytes when already known (required by [`write_stored_file`]).
    pub crc32: Option<u32>,
}

/// Writes the entries STORED into the (new, empty) file at `path`, each copied by the kernel
/// at its precomputed offset. Returns the bytes written. Same bytes as
/// `write_zip(.., 0)` for the same entries.
///
/// A file that shrank since it was listed is an error; like the streaming writer, this does
/// not re-check content that changed in place after hashing.
pub fn write_stored_file(path: &Path, entries: &[ZipEntry]) -> io::Result<u64> {
    let mut crcs = Vec::with_capacity(entries.len());
    for e in entries {
        too_large(e.size, &e.source)?;
        crcs.push(e.crc32.ok_or_else(|| {
            io::Error::other(format!(
                "{}: CRC-32 unknown (internal error: hash the entries first)",
                e.source.display()
            ))
        })?);
    }
    let dst = std::fs::File::options().write(true).open(path)?;
    let zip = StoredZip::new(dst, entries.iter().map(|e| (e.name.clone(), e.size)));
    // One writer: parallel writers to one file serialize on its inode lock and spin there.
    let mut run = zip.run();
    for (i, e) in entries.iter().enumerate() {
        let named =
            |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", e.source.display()));
        let src = std::fs::File::open(&e.source).map_err(named)?;
        run.add(i, &src, e.size, Some(crcs[i])).map_err(named)?;
    }
    run.finish()?;
    drop(run);
    zip.finish(entries.iter().map(|e| e.mode).zip(crcs))
}

/// A STORED zip whose layout is fixed up front from the entries' names and sizes, so entries
/// can be written in any order, from any thread, each at its own offset. It is the
/// [`CopySink`] of the hashing pass: `raypack env` reads each file once, hashing it and
/// writing it here in the same pass.
///
/// A local header carries the entry's CRC-32, so it is written with (or after) the entry's
/// bytes. [`StoredZip::finish`] writes the central directory once every entry is in.
#[derive(Debug)]
pub struct StoredZip {
    file: std::fs::File,
    names: Vec<String>,
    sizes: Vec<u64>,
    offsets: Vec<u64>,
    cd_start: u64,
    written: std::sync::atomic::AtomicU64,
    /// Wakes the write-back thread (see [`StoredZip::wrote`]).
    writeback: Option<std::sync::mpsc::SyncSender<()>>,
    /// Held by the thread writing gathered buffers (see [`StoredZip::write_or_queue`]).
    writing: std::sync::Mutex<()>,
    /// Gathered stretches left for whichever thread writes next.
    queued: std::sync::Mutex<Vec<Gathered>>,
    /// Run buffers no run is using, kept for the next: zeroing a fresh one per run costs more
    /// than the copies it saves.
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl StoredZip {
    /// Lays out `(name, size)` entries, in archive order, over `file` (new and empty).
    pub fn new(file: std::fs::File, entries: impl Iterator<Item = (String, u64)>) -> StoredZip {
        let (mut names, mut sizes, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0u64;
        for (name, size) in entries {
            offsets.push(at);
            at += local_header_len(&name) as u64 + size;
            names.push(name);
            sizes.push(size);
        }
        // Write-back is started from a thread of its own: submitting it is slow work (block
        // allocation, queueing) that would otherwise stall a copying thread.
        let writeback = file.try_clone().ok().and_then(|f| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            std::thread::Builder::new()
                .name("zip-writeback".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        start_writeback(&f, 0, 0);
                    }
                })
                .ok()
                .map(|_| tx)
        });
        StoredZip {
            file,
            names,
            sizes,
            offsets,
            cd_start: at,
            written: Default::default(),
            writeback,
            writing: Default::default(),
            queued: Default::default(),
            spare: Default::default(),
        }
    }

    /// Writes `buf[..len]` at `at`, or, when another thread is writing, queues it for that
    /// thread (or the next) and goes on with a spare buffer. Returns the buffer to go on with.
    ///
    /// Buffered writes to one file hold its inode lock for the whole copy, so two threads
    /// writing at once had one spinning on that lock (5% of a cold `env`'s CPU in profiles).
    fn write_or_queue(&self, g: Gathered) -> io::Result<Vec<u8>> {
        match self.writing.try_lock() {
            Ok(_writing) => {
                self.write_gathered(&g)?;
                self.write_queued()?;
                Ok(g.buf)
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                self.queued.lock().unwrap().push(g);
                Ok(self.spare_buffer())
            }
            Err(std::sync::TryLockError::Poisoned(_)) => {
                Err(io::Error::other("internal error: a zip writer panicked"))
            }
        }
    }

    /// Writes every queued buffer (the caller holds `writing`, or is the last one left).
    fn write_queued(&self) -> io::Result<()> {
        loop {
            let Some(g) = self.queued.lock().unwrap().pop() else {
                return Ok(());
            };
            self.write_gathered(&g)?;
            self.spare.lock().unwrap().push(g.buf);
        }
    }

    fn spare_buffer(&self) -> Vec<u8> {
        self.spare.lock().unwrap().pop().unwrap_or_default()
    }

    /// Writes a gathered stretch with one `pwritev`: the buffer, with the mapped files'
    /// bytes spliced in where they belong.
    fn write_gathered(&self, g: &Gathered) -> io::Result<()> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * g.maps.len() + 1);
        let mut from = 0;
        for (split, m) in &g.maps {
            parts.push(&g.buf[from..*split]);
            parts.push(m.bytes());
            from = *split;
        }
        parts.push(&g.buf[from..g.used]);
        parts.retain(|p| !p.is_empty());
        let total: usize = parts.iter().map(|p| p.len()).sum();
        write_all_vectored_at(&self.file, parts, g.at)?;
        self.wrote(total as u64);
        Ok(())
    }

    /// Writes the central directory and end records from each entry's `(mode, crc32)`, in
    /// archive order. Returns the archive's length.
    pub fn finish(mut self, modes_crcs: impl Iterator<Item = (u32, u32)>) -> io::Result<u64> {
        self.writeback = None;
        self.write_queued()?;
        let cd_start = self.cd_start;
        let mut f = self.file;
        f.seek(io::SeekFrom::Start(cd_start))?;
        let mut w = CountingWriter {
            inner: io::BufWriter::with_capacity(1 << 20, f),
            count: cd_start,
        };
        let mut n = 0u64;
        for (i, (mode, crc)) in modes_crcs.enumerate() {
            write_central_header(
                &mut w,
                &Central {
                    name: self.names[i].clone(),
                    mode,
                    crc,
                    method: STORED,
                    compressed: self.sizes[i],
                    uncompressed: self.sizes[i],
                    offset: self.offsets[i],
                },
            )?;
            n += 1;
        }
        if n != self.names.len() as u64 {
            return Err(io::Error::other(format!(
                "internal error: {n} modes for {} zip entries",
                self.names.len()
            )));
        }
        let cd_size = w.count - cd_start;
        write_end(&mut w, n, cd_size, cd_start)?;
        w.flush()?;
        Ok(w.count)
    }

    fn header(&self, index: usize, crc: u32) -> Vec<u8> {
        let size = self.sizes[index];
        local_header(&self.names[index], STORED, crc, size, size)
    }

    /// Counts bytes written and, every [`WRITEBACK_CHUNK`], asks the kernel to start writing
    /// the file back, so the publisher's final fsync has little left to wait for.
    fn wrote(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let before = self.written.fetch_add(n, Ordering::Relaxed);
        if before / WRITEBACK_CHUNK != (before + n) / WRITEBACK_CHUNK
            && let Some(tx) = &self.writeback
        {
            // Full: a kick is already pending, which covers this one too.
            let _ = tx.try_send(());
        }
    }
}

impl CopySink for StoredZip {
    fn run(&self) -> Box<dyn CopyRun + '_> {
        Box::new(Run {
            zip: self,
            buf: self.spare_buffer(),
            at: 0,
            used: 0,
            span: 0,
            maps: Vec::new(),
            pending: Vec::new(),
            hashed: Vec::new(),
        })
    }
}

/// Up to this many bytes of neighbouring entries (headers and data) are gathered and written
/// with one call: per byte, the kernel's buffered write is several times cheaper in large
/// writes than in file-sized ones.
const RUN_BUFFER: usize = 4 << 20;

/// Files this large or larger are mapped rather than read: their bytes are hashed in the page
/// cache and written from there, with no copy through this process (the read copy was the
/// largest kernel cost of a cold `env` in profiles; below this size, mapping costs more).
const MAP_MIN: u64 = 64 << 10;

/// One thread's run of neighbouring entries, gathered in a buffer (headers and small files)
/// and mapped files, and written in large pieces.
struct Run<'a> {
    zip: &'a StoredZip,
    buf: Vec<u8>,
    /// File offset of the gathered stretch.
    at: u64,
    /// Bytes used in `buf`.
    used: usize,
    /// Bytes of the archive gathered (in `buf` and in `maps`).
    span: usize,
    /// Mapped files, each with the position in `buf` its bytes follow.
    maps: Vec<(usize, Mapped)>,
    /// Entries gathered, not written yet. Their headers are filled in when the stretch is
    /// written.
    pending: Vec<Pending>,
    /// SHA-256 and CRC-32 of the entries added without a CRC, by index.
    hashed: Vec<(usize, Hashes)>,
}

/// An entry gathered in a [`Run`].
struct Pending {
    index: usize,
    /// Where its header ends in the run's buffer (and its bytes start, unless mapped).
    start: usize,
    /// Its mapping in the run's `maps`, if mapped.
    map: Option<usize>,
    crc32: Option<u32>,
}

/// A stretch of the archive ready to write: `buf[..used]` with each mapped file's bytes
/// following the buffer position it is paired with.
#[derive(Debug)]
struct Gathered {
    buf: Vec<u8>,
    used: usize,
    at: u64,
    maps: Vec<(usize, Mapped)>,
}

impl Run<'_> {
    /// Hashes the gathered entries that need it (two at a time: [`sha256_lanes`]), fills in
    /// their headers and writes the stretch.
    fn flush(&mut self) -> io::Result<()> {
        if self.span == 0 {
            return Ok(());
        }
        let zip = self.zip;
        let (buf, maps) = (&self.buf, &self.maps);
        let data = |p: &Pending| match p.map {
            Some(m) => maps[m].1.bytes(),
            None => &buf[p.start..p.start + zip.sizes[p.index] as usize],
        };
        let unknown: Vec<&[u8]> = (self.pending.iter())
            .filter(|p| p.crc32.is_none())
            .map(data)
            .collect();
        let mut digests = sha256_lanes::digest_all(&unknown).into_iter();
        let mut headers = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            let crc = p.crc32.unwrap_or_else(|| {
                let crc = crc32fast::hash(data(p));
                let sha = digests.next().expect("one digest per entry hashed");
                self.hashed.push((p.index, (sha, crc)));
                crc
            });
            headers.push((p.start, zip.header(p.index, crc)));
        }
        for (end, h) in headers {
            self.buf[end - h.len()..end].copy_from_slice(&h);
        }
        self.pending.clear();
        self.buf = zip.write_or_queue(Gathered {
            buf: std::mem::take(&mut self.buf),
            used: self.used,
            at: self.at,
            maps: std::mem::take(&mut self.maps),
        })?;
        self.used = 0;
        self.span = 0;
        Ok(())
    }

    /// Grows the (thread's reused) buffer to its working size once.
    fn sized(&mut self) {
        if self.buf.len() < RUN_BUFFER + 1 {
            self.buf.resize(RUN_BUFFER + 1, 0);
        }
    }

    /// Makes room for `len` bytes at file offset `at`: `Some(start in buf)`, or `None` when
    /// the entry is too large to gather and must be written by itself.
    fn room(&mut self, at: u64, len: usize) -> io::Result<Option<usize>> {
        if self.span > 0 && (self.at + self.span as u64 != at || self.span + len > RUN_BUFFER) {
            self.flush()?;
        }
        if len > RUN_BUFFER {
            self.flush()?;
            return Ok(None);
        }
        self.sized();
        if self.span == 0 {
            self.at = at;
        }
        Ok(Some(self.used))
    }

    /// Reads exactly `size` bytes of `src` into `buf[start..]` (asking for one byte more finds
    /// a file that grew since it was listed).
    fn read_whole(&mut self, src: &std::fs::File, start: usize, size: u64) -> io::Result<()> {
        use std::io::Read;
        let end = start + size as usize + 1;
        let mut got = 0usize;
        let mut src = src;
        loop {
            match src.read(&mut self.buf[start + got..end]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if got as u64 > size {
                return Err(changed(size, got as u64));
            }
        }
        if got as u64 != size {
            return Err(changed(size, got as u64));
        }
        Ok(())
    }

    /// Streams a large entry straight to its place, hashing it; the header goes in last.
    fn stream(&mut self, index: usize, src: &std::fs::File, size: u64) -> io::Result<Hashes> {
        use sha2::Digest;
        use std::io::Read;
        self.sized();
        let at = self.zip.offsets[index];
        let head = local_header_len(&self.zip.names[index]) as u64;
        let mut crc = crc32fast::Hasher::new();
        let mut sha = sha2::Sha256::new();
        let mut done = 0u64;
        let mut src = src;
        loop {
            let n = match src.read(&mut self.buf[..RUN_BUFFER]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if done + n as u64 > size {
                return Err(changed(size, done + n as u64));
            }
            sha.update(&self.buf[..n]);
            crc.update(&self.buf[..n]);
            self.zip
                .file
                .write_all_at(&self.buf[..n], at + head + done)?;
            self.zip.wrote(n as u64);
            done += n as u64;
        }
        if done != size {
            return Err(changed(size, done));
        }
        self.zip
            .file
            .write_all_at(&self.zip.header(index, crc.clone().finalize()), at)?;
        Ok((sha.finalize().into(), crc.finalize()))
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if !buf.is_empty() {
            self.zip.spare.lock().unwrap().push(buf);
        }
    }
}

impl CopyRun for Run<'_> {
    fn add(
        &mut self,
        index: usize,
        src: &std::fs::File,
        size: u64,
        crc32: Option<u32>,
    ) -> io::Result<()> {
        too_large(size, Path::new(&self.zip.names[index]))?;
        let head = local_header_len(&self.zip.names[index]);
        let at = self.zip.offsets[index];
        match (self.room(at, head + size as usize)?, crc32) {
            (Some(start), _) => {
                let map = if size >= MAP_MIN {
                    self.maps.push((start + head, Mapped::of(src, size)?));
                    self.used += head;
                    Some(self.maps.len() - 1)
                } else {
                    self.read_whole(src, start + head, size)?;
                    self.used += head + size as usize;
                    None
                };
                self.span += head + size as usize;
                self.pending.push(Pending {
                    index,
                    start: start + head,
                    map,
                    crc32,
                });
            }
            (None, None) => {
                let h = self.stream(index, src, size)?;
                self.hashed.push((index, h));
            }
            (None, Some(crc)) => {
                self.zip
                    .file
                    .write_all_at(&self.zip.header(index, crc), at)?;
                copy_range(src, &self.zip.file, at + head as u64, size)?;
                self.zip.wrote(head as u64 + size);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<Vec<(usize, Hashes)>> {
        self.flush()?;
        Ok(std::mem::take(&mut self.hashed))
    }
}

/// A whole file mapped read-only.
///
/// A file truncated by another process while mapped would fault on access (SIGBUS), as in
/// every tool that maps files (ripgrep, git); its length is checked right after mapping, and
/// the window is the few milliseconds until its run is written.
#[derive(Debug)]
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; moving it to the thread that
// writes it is as safe as moving a `Vec<u8>`.
unsafe impl Send for Mapped {}

impl Mapped {
    fn of(f: &std::fs::File, size: u64) -> io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let len = f.metadata()?.len();
        if len != size {
            return Err(changed(size, len));
        }
        // SAFETY: a fresh private read-only mapping of an open file; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped {
            ptr,
            len: size as usize,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Writes all of `parts`, in order, at `at` (`pwritev`, resumed after short writes).
fn write_all_vectored_at(
    file: &std::fs::File,
    mut parts: Vec<&[u8]>,
    mut at: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut i = 0;
    while i < parts.len() {
        let iov: Vec<libc::iovec> = (parts[i..].iter().take(1024))
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: every iovec points at a live slice of `parts`; the kernel only reads them.
        let n =
            unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, at as i64) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        at += n as u64;
        let mut n = n as usize;
        while n > 0 {
            if parts[i].len() <= n {
                n -= parts[i].len();
                i += 1;
            } else {
                parts[i] = &parts[i][n..];
                n = 0;
            }
        }
    }
    Ok(())
}

fn changed(expected: u64, got: u64) -> io::Error {
    io::Error::other(format!(
        "changed while being packed ({got} bytes, expected {expected}); run again"
    ))
}

const WRITEBACK_CHUNK: u64 = 16 << 20;

/// Copies `len` bytes from the start of `src` to `dst` at `at`, in the kernel
/// (`copy_file_range`), falling back to read + write where the kernel cannot.
fn copy_range(src: &std::fs::File, dst: &std::fs::File, at: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (mut src_off, mut dst_off) = (0i64, at as i64);
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open for the duration of the call and the offsets
        // point at live i64s; the kernel only reads and updates them.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut src_off,
                dst.as_raw_fd(),
                &mut dst_off,
                left.min(1 << 30) as usize,
                0,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not supported between these files (other filesystems, old kernels).
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                    return copy_by_reading(src, dst, src_off as u64, dst_off as u64, left);
                }
                _ => return Err(err),
            }
        }
        if n == 0 {
            return Err(changed(len, len - left));
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_by_reading(
    src: &std::fs::File,
    dst: &std::fs::File,
    mut src_off: u64,
    mut dst_off: u64,
    mut left: u64,
) -> io::Result<()> {
    let total = src_off + left;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = src.read_at(&mut buf[..want], src_off)?;
        if n == 0 {
            return Err(changed(total, src_off));
        }
        dst.write_all_at(&buf[..n], dst_off)?;
        src_off += n as u64;
        dst_off += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `at` back to disk, without waiting.
fn start_writeback(f: &std::fs::File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; failure only loses the head start.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            at as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

fn too_large(size: u64, source: &Path) -> io::Result<()> {
    if size >= MAX32 {
        return Err(io::Error::other(format!(
            "{}: files of 4 GiB or more are not supported in runtime_env packages",
            source.display()
        )));
    }
    Ok(())
}

/// Writes entries to `out`, compressing batches of them in parallel. Returns the bytes written.
///
/// Entries are read, compressed and written in batches of at most `BATCH_BYTES` of input, so
/// memory stays bounded for large packages.
pub fn write_zip<W: Write>(out: W, entries: &[ZipEntry], level: u32) -> io::Result<u64> {
    const BATCH_BYTES: u64 = 64 * 1024 * 1024;
    let mut w = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut central = Vec::with_capacity(entries.len());
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < entries.len() && (end == start || bytes + entries[end].size <= BATCH_BYTES) {
            bytes += entries[end].size;
            end += 1;
        }
        let compressed: Vec<io::Result<Compressed>> = entries[start..end]
            .par_iter()
            .map(|e| compress_entry(e, level))
            .collect();
        for (e, c) in entries[start..end].iter().zip(compressed) {
            let c = c?;
            let offset = w.count;
            write_local_header(&mut w, e, &c)?;
            w.write_all(&c.data)?;
            central.push(Central {
                name: e.name.clone(),
                mode: e.mode,
                crc: c.crc,
                method: c.method,
                compressed: c.data.len() as u64,
                uncompressed: c.uncompressed,
                offset,
            });
        }
        start = end;
    }
    let cd_start = w.count;
    for c in &central {
        write_central_header(&mut w, c)?;
    }
    let cd_size = w.count - cd_start;
    write_end(&mut w, central.len() as u64, cd_size, cd_start)?;
    w.flush()?;
    Ok(w.count)
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Compressed {
    data: Vec<u8>,
    crc: u32,
    method: u16,
    uncompressed: u64,
}

struct Central {
    name: String,
    mode: u32,
    crc: u32,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

const STORED: u16 = 0;
const DEFLATED: u16 = 8;
/// DOS date for 1980-01-01, time 00:00:00.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;
const FLAG_UTF8: u16 = 1 << 11;
const MAX32: u64 = 0xFFFF_FFFF;

fn compress_entry(e: &ZipEntry, level: u32) -> io::Result<Compressed> {
    let raw = std::fs::read(&e.source)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", e.source.display())))?;
    too_large(raw.len() as u64, &e.source)?;
    let crc = crc32fast::hash(&raw);
    let uncompressed = raw.len() as u64;
    if level > 0 && raw.len() > 64 && !looks_incompressible(&raw) {
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(raw.len() / 2),
            flate2::Compression::new(level),
        );
        enc.write_all(&raw)?;
        let data = enc.finish()?;
        // Incompressible data (already-compressed files, random bytes) is stored as-is.
        if data.len() < raw.len() {
            return Ok(Compressed {
                data,
                crc,
                method: DEFLATED,
                uncompressed,
            });
        }
    }
    Ok(Compressed {
        data: raw,
        crc,
        method: STORED,
        uncompressed,
    })
}

/// Already-compressed or random data: a 64 KiB sample from the middle of a large file that
/// DEFLATE (fastest level) cannot shrink by 10 %. Such entries are stored, saving the time of
/// compressing them for nothing.
fn looks_incompressible(raw: &[u8]) -> bool {
    const SAMPLE: usize = 64 * 1024;
    if raw.len() < 4 * SAMPLE {
        return false;
    }
    let mid = raw.len() / 2;
    let sample = &raw[mid - SAMPLE / 2..mid + SAMPLE / 2];
    let mut enc =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(SAMPLE), flate2::Compression::fast());
    if enc.write_all(sample).is_err() {
        return false;
    }
    enc.finish()
        .map(|c| c.len() * 10 > SAMPLE * 9)
        .unwrap_or(false)
}

fn write_local_header<W: Write>(w: &mut W, e: &ZipEntry, c: &Compressed) -> io::Result<()> {
    w.write_all(&local_header(
        &e.name,
        c.method,
        c.crc,
        c.data.len() as u64,
        c.uncompressed,
    ))
}

/// Bytes of a local header for `name` (no extra fields are ever written).
fn local_header_len(name: &str) -> usize {
    30 + name.len()
}

fn local_header(name: &str, method: u16, crc: u32, compressed: u64, uncompressed: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(local_header_len(name));
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes()); // version needed
    h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
    h.extend_from_slice(&method.to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&(compressed as u32).to_le_bytes());
    h.extend_from_slice(&(uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // extra length
    h.extend_from_slice(name.as_bytes());
    h
}

fn write_central_header<W: Write>(w: &mut W, c: &Central) -> io::Result<()> {
    let zip64_offset = c.offset >= MAX32;
    let mut extra = Vec::new();
    if zip64_offset {
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&8u16.to_le_bytes());
        extra.extend_from_slice(&c.offset.to_le_bytes());
    }
    let mut h = Vec::with_capacity(46 + c.name.len() + extra.len());
    h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    h.extend_from_slice(&((3u16 << 8) | if zip64_offset { 45 } else { 20 }).to_le_bytes()); // made by: Unix
    h.extend_from_slice(&(if zip64_offset { 45u16 } else { 20 }).to_le_bytes());
    h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
    h.extend_from_slice(&c.method.to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&c.crc.to_le_bytes());
    h.extend_from_slice(&(c.compressed as u32).to_le_bytes());
    h.extend_from_slice(&(c.uncompressed as u32).to_le_bytes());
    h.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // comment
    h.extend_from_slice(&0u16.to_le_bytes()); // disk
    h.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
    let external = (0o100000 | (c.mode & 0o7777)) << 16;
    h.extend_from_slice(&external.to_le_bytes());
    h.extend_from_slice(
        &(if zip64_offset {
            MAX32 as u32
        } else {
            c.offset as u32
        })
        .to_le_bytes(),
    );
    h.extend_from_slice(c.name.as_bytes());
    h.extend_from_slice(&extra);
    w.write_all(&h)
}

fn write_end<W: Write>(
    w: &mut CountingWriter<W>,
    count: u64,
    cd_size: u64,
    cd_start: u64,
) -> io::Result<()> {
    let needs64 = count >= 0xFFFF || cd_size >= MAX32 || cd_start >= MAX32;
    if needs64 {
        let eocd64_at = w.count;
        let mut r = Vec::with_capacity(56 + 20);
        r.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        r.extend_from_slice(&44u64.to_le_bytes());
        r.extend_from_slice(&((3u16 << 8) | 45).to_le_bytes());
        r.extend_from_slice(&45u16.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&count.to_le_bytes());
        r.extend_from_slice(&cd_size.to_le_bytes());
        r.extend_from_slice(&cd_start.to_le_bytes());
        // locator
        r.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&eocd64_at.to_le_bytes());
        r.extend_from_slice(&1u32.to_le_bytes());
        w.write_all(&r)?;
    }
    let mut r = Vec::with_capacity(22);
    r.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    let n16 = count.min(0xFFFF) as u16;
    r.extend_from_slice(&n16.to_le_bytes());
    r.extend_from_slice(&n16.to_le_bytes());
    r.extend_from_slice(&(cd_size.min(MAX32) as u32).to_le_bytes());
    r.extend_from_slice(&(cd_start.min(MAX32) as u32).to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes());
    w.write_all(&r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(dir: &std::path::Path, n: usize) -> Vec<ZipEntry> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                let body = format!("file {i} ").repeat(i * 10 + 1);
                std::fs::write(&p, &body).unwrap();
                ZipEntry {
                    name: format!("pkg/dir/f{i}.txt"),
                    source: p,
                    mode: if i % 2 == 0 { 0o644 } else { 0o755 },
                    size: body.len() as u64,
                    crc32: Some({
                        let mut c = flate2::Crc::new();
                        c.update(body.as_bytes());
                        c.sum()
                    }),
                }
            })
            .collect()
    }

    #[test]
    fn readable_by_zip_crate_with_modes_and_content() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 5);
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 6).unwrap();
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 5);
        for (i, e) in es.iter().enumerate() {
            let mut f = z.by_index(i).unwrap();
            assert_eq!(f.name().unwrap(), e.name);
            assert_eq!(f.unix_mode().unwrap() & 0o777, e.mode);
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            assert_eq!(s, std::fs::read_to_string(&e.source).unwrap());
        }
    }

    #[test]
    fn same_entries_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 20);
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_zip(&mut a, &es, 6).unwrap();
        write_zip(&mut b, &es, 6).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn stored_fast_path_gives_the_same_bytes_as_the_streaming_writer() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 40);
        let mut a = Vec::new();
        write_zip(&mut a, &es, 0).unwrap();
        let out = d.path().join("out.zip");
        std::fs::File::create(&out).unwrap();
        let n = write_stored_file(&out, &es).unwrap();
        let b = std::fs::read(&out).unwrap();
        assert_eq!(n, b.len() as u64);
        assert!(a == b, "stored fast path differs from write_zip(level 0)");
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(b)).unwrap();
        let mut s = String::new();
        z.by_index(7).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, std::fs::read_to_string(&es[7].source).unwrap());
    }

    #[test]
    fn stored_fast_path_notices_a_file_that_shrank() {
        let d = tempfile::tempdir().unwrap();
        let es = entries(d.path(), 3);
        std::fs::write(&es[1].source, "").unwrap();
        let out = d.path().join("out.zip");
        std::fs::File::create(&out).unwrap();
        let e = write_stored_file(&out, &es).unwrap_err();
        assert!(e.to_string().contains("changed while being packed"), "{e}");
    }

    #[test]
    fn many_entries_use_zip64_end_records() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, "x").unwrap();
        let es: Vec<ZipEntry> = (0..70_000)
            .map(|i| ZipEntry {
                name: format!("w/{i:06}"),
                source: p.clone(),
                mode: 0o644,
                size: 1,
                crc32: None,
            })
            .collect();
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 1).unwrap();
        let z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 70_000);
    }
}
