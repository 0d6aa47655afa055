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
//! Level 0 (STORED, what Ray itself writes) has a faster path, [`StoredZip`]: with the sizes
//! known from the walk, every entry's offset is known up front, so entries are written in
//! large aligned pieces from several threads (directly to the disk where the filesystem does
//! that well), hashed as they are copied or with CRCs known from the hashing pass
//! ([`write_stored_file`]). Both paths give the same bytes for the same entries.

use std::io::{self, Write};
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
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 of the bytes when already known (required by [`write_stored_file`]).
    pub crc32: Option<u32>,
    /// SHA-256 of the bytes when the package's name was derived from it: [`write_zip`] checks
    /// that what it read and compressed is exactly those bytes (else "changed while being
    /// packed"), so a content-addressed name never holds other content.
    pub sha256: Option<[u8; 32]>,
}

/// Writes the entries STORED into the (new, empty) file at `path` through a [`StoredZip`],
/// each at its precomputed offset. Returns the bytes written. Same bytes as
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
    // One run, on this thread: the CRCs are known, so there is nothing to hash, only bytes
    // to copy (and buffered writers to one file serialize on its inode lock).
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
///
/// On ext4 and XFS the file is written with `O_DIRECT`: whole aligned blocks go from this
/// process's buffers to the disk, by writer threads, so the hashing threads never wait for
/// the disk and no page cache is filled (and then flushed by the publisher's fsync) for an
/// archive nobody here reads again. Stretches of the archive rarely start or end on a block
/// boundary: the partial blocks at their edges meet in [`Edges`] and are written once whole.
/// Other filesystems (tmpfs, NFS, FUSE, btrfs) get plain buffered writes of the same bytes.
pub struct StoredZip {
    file: std::fs::File,
    names: Vec<String>,
    sizes: Vec<u64>,
    offsets: Vec<u64>,
    cd_start: u64,
    pool: std::sync::Arc<Pool>,
    /// `Some` while the file is written directly.
    direct: Option<Direct>,
    /// Buffered writes only: bytes written, for [`StoredZip::wrote`].
    written: std::sync::atomic::AtomicU64,
    /// Buffered writes only: wakes the write-back thread (see [`StoredZip::wrote`]).
    writeback: Option<std::sync::mpsc::SyncSender<()>>,
}

impl std::fmt::Debug for StoredZip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredZip")
            .field("entries", &self.names.len())
            .field("cd_start", &self.cd_start)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

/// Alignment of direct writes: file offsets, lengths and buffer addresses are all multiples
/// of it (4 KiB suits 512-byte and 4Kn devices alike).
const BLOCK: usize = 4096;

/// Up to this many bytes of neighbouring entries (headers and data) are gathered and written
/// with one call: the disk (and, for buffered writes, the kernel) does far better per byte with
/// large writes than with file-sized ones. With the two blocks of slack a stretch may need at
/// its edges, a run buffer is exactly one 2 MiB huge page.
const RUN_BUFFER: usize = HUGE_PAGE - 2 * BLOCK;

/// Buffers a zip may have out at once (hashing threads, writer queue, writes in flight): the
/// bound on its memory, and how far hashing may run ahead of the disk. Kept small on purpose:
/// fresh memory is not free (faulting in and zeroing 32 MiB cost a cold `env` ~40 ms of CPU
/// on the test VM, 12% of the whole), and six 2 MiB buffers keep two hashing threads and four
/// writers busy. Machines with more threads get one more buffer per thread ([`pool_buffers`]).
const POOL_BUFFERS: usize = 6;

/// [`POOL_BUFFERS`], or one buffer per hashing thread plus one per writer when that is more
/// (each hashing thread holds at most one buffer at a time, each writer one in flight), so a
/// many-core machine is not throttled to six buffers.
fn pool_buffers() -> usize {
    POOL_BUFFERS.max(rayon::current_num_threads() + WRITERS)
}

/// Threads writing directly: each write blocks its thread until the disk has it, so several
/// keep requests queued at the disk while others are being submitted. Cold pack of the bench
/// tree on the 2-core test VM (4 MiB buffers, 4 KiB pages), medians of 5–9 interleaved runs:
/// 1 writer 266 ms, 2 writers 209 ms, 4 writers 183–188 ms, 8 writers 176–179 ms (within the
/// noise of 4).
const WRITERS: usize = 4;

/// A stretch of the archive ready to write: `buf[from..to]` belongs at file offset `at`.
struct Job {
    buf: AlignedBuf,
    from: usize,
    to: usize,
    at: u64,
}

/// State of a zip being written with `O_DIRECT`.
struct Direct {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    writers: Vec<std::thread::JoinHandle<io::Result<()>>>,
    edges: std::sync::Mutex<Edges>,
}

/// Partial blocks, by block index: the bytes each stretch has put in, and how many. A block
/// is written once it is full (or, at the end, once it holds everything up to the archive's
/// end).
#[derive(Default)]
struct Edges {
    blocks: std::collections::HashMap<u64, (AlignedBuf, usize)>,
    /// The archive's length, once [`StoredZip::finish`] knows it.
    end: Option<u64>,
}

impl StoredZip {
    /// Lays out `(name, size)` entries, in archive order, over `file` (new and empty). Writes
    /// go directly to the disk where the filesystem is known to do that well.
    pub fn new(file: std::fs::File, entries: impl Iterator<Item = (String, u64)>) -> StoredZip {
        Self::with(file, entries, true)
    }

    fn with(
        file: std::fs::File,
        entries: impl Iterator<Item = (String, u64)>,
        try_direct: bool,
    ) -> StoredZip {
        let (mut names, mut sizes, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0u64;
        for (name, size) in entries {
            offsets.push(at);
            at += local_header_len(&name) as u64 + size;
            names.push(name);
            sizes.push(size);
        }
        let pool = std::sync::Arc::new(Pool::new(RUN_BUFFER + 2 * BLOCK, pool_buffers()));
        let direct = if try_direct {
            Direct::start(&file, at)
        } else {
            None
        };
        // Buffered writes: write-back is started from a thread of its own, as submitting it is
        // slow work (block allocation, queueing) that would otherwise stall a copying thread.
        let writeback = if direct.is_some() {
            None
        } else {
            file.try_clone().ok().and_then(|f| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
                std::thread::Builder::new()
                    .name("zip-writeback".into())
                    .spawn(move || {
                        while rx.recv().is_ok() {
                            start_writeback(&f);
                        }
                    })
                    .ok()
                    .map(|_| tx)
            })
        };
        StoredZip {
            file,
            names,
            sizes,
            offsets,
            cd_start: at,
            pool,
            direct,
            written: Default::default(),
            writeback,
        }
    }

    /// Puts `len` bytes at file offset `at`, held in `buf` from `at % BLOCK` on. Direct: the
    /// whole blocks go to a writer, the partial ones at either edge to [`Edges`]. Buffered:
    /// written here.
    fn put(&self, buf: AlignedBuf, at: u64, len: usize) -> io::Result<()> {
        let base = at - at % BLOCK as u64;
        let end = at + len as u64;
        let Some(direct) = &self.direct else {
            let from = (at - base) as usize;
            self.file.write_all_at(&buf[from..from + len], at)?;
            self.wrote(len as u64);
            return Ok(());
        };
        let lo = align_up(at);
        let hi = end - end % BLOCK as u64;
        let slice = |a: u64, b: u64| &buf[(a - base) as usize..(b - base) as usize];
        if lo < hi {
            if at < lo {
                direct.edge(at, slice(at, lo))?;
            }
            if hi < end {
                direct.edge(hi, slice(hi, end))?;
            }
            let (from, to) = ((lo - base) as usize, (hi - base) as usize);
            return direct.send(Job {
                buf,
                from,
                to,
                at: lo,
            });
        }
        // No whole block: at most two partial ones.
        let mid = lo.min(end);
        let r = direct.edge(at, slice(at, mid)).and_then(|()| {
            if mid < end {
                direct.edge(mid, slice(mid, end))
            } else {
                Ok(())
            }
        });
        drop(buf);
        r
    }

    /// [`StoredZip::put`] for a few bytes held anywhere (a header written last).
    fn put_bytes(&self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let lead = (at % BLOCK as u64) as usize;
        let mut buf = AlignedBuf::new(align_up((lead + bytes.len()) as u64) as usize);
        buf[lead..lead + bytes.len()].copy_from_slice(bytes);
        self.put(buf, at, bytes.len())
    }

    /// Writes the central directory and end records from each entry's `(mode, crc32)`, in
    /// archive order, and waits for every write. Returns the archive's length.
    pub fn finish(mut self, modes_crcs: impl Iterator<Item = (u32, u32)>) -> io::Result<u64> {
        let cd_start = self.cd_start;
        let mut w = CountingWriter {
            inner: Vec::with_capacity(self.names.len() * 96 + 128),
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
        let end = w.count;
        if let Some(direct) = &self.direct {
            // From here the block holding the archive's end is complete once it holds the
            // bytes up to there; the central directory, put next, fills it.
            direct.edges.lock().unwrap().end = Some(end);
        }
        self.put_bytes(cd_start, &w.inner)?;
        if let Some(direct) = self.direct.take() {
            let t = std::time::Instant::now();
            direct.finish()?;
            tracing::debug!(
                ms = t.elapsed().as_millis() as u64,
                "waited for the zip's direct writes"
            );
            // The last block went out whole; the archive ends where its bytes do.
            self.file.set_len(end)?;
            set_direct(&self.file, false)?;
        }
        Ok(end)
    }

    fn header(&self, index: usize, crc: u32) -> Vec<u8> {
        let size = self.sizes[index];
        local_header(&self.names[index], STORED, crc, size, size)
    }

    /// Buffered writes: counts bytes written and, every [`WRITEBACK_CHUNK`], asks the kernel
    /// to start writing the file back, so the publisher's final fsync has little left to wait
    /// for.
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

impl Drop for StoredZip {
    fn drop(&mut self) {
        // Abandoned (an entry failed): let the writers drain and stop.
        if let Some(direct) = self.direct.take() {
            let _ = direct.finish();
        }
    }
}

impl Direct {
    /// Switches `file` to direct writes and starts the writers, or `None` where the
    /// filesystem is not one known to do direct writes well (or refuses them).
    fn start(file: &std::fs::File, data_len: u64) -> Option<Direct> {
        use std::os::fd::AsRawFd;
        // SAFETY: fstatfs fills the zeroed struct for an open descriptor.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
            return None;
        }
        // ext4 (also ext2/3) and XFS: block filesystems whose direct writes are plain and
        // fast. NFS, FUSE and btrfs have their own ideas of O_DIRECT; tmpfs refuses it.
        const EXT4: i64 = 0xEF53;
        const XFS: i64 = 0x5846_5342;
        if !matches!(fs.f_type as i64, EXT4 | XFS) {
            return None;
        }
        // Where the kernel says how direct I/O to this file must be aligned (statx, Linux 6.1
        // and later), [`BLOCK`] must satisfy it; 0 means no direct I/O for this file.
        // SAFETY: statx fills the zeroed struct for an open descriptor (empty path).
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::statx(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_DIOALIGN,
                &mut stx,
            )
        };
        if r == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
            let fits = |a: u32| a != 0 && BLOCK.is_multiple_of(a as usize);
            if !fits(stx.stx_dio_mem_align) || !fits(stx.stx_dio_offset_align) {
                return None;
            }
        }
        set_direct(file, true).ok()?;
        // Allocated up front, the data blocks are overwritten rather than appended to, which
        // ext4 lets several direct writes do at once. Only a head start: ignore failure.
        // SAFETY: plain syscall on an open descriptor.
        unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, align_up(data_len) as i64) };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(pool_buffers());
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let mut writers = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let (Ok(f), rx) = (file.try_clone(), rx.clone()) else {
                break;
            };
            let spawned = std::thread::Builder::new()
                .name("zip-writer".into())
                .spawn(move || write_jobs(&f, &rx));
            if let Ok(h) = spawned {
                writers.push(h);
            }
        }
        if writers.is_empty() {
            let _ = set_direct(file, false);
            return None;
        }
        Some(Direct {
            jobs: Some(tx),
            writers,
            edges: Default::default(),
        })
    }

    fn send(&self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.as_ref().expect("jobs are sent before finish");
        jobs.send(job)
            .map_err(|_| io::Error::other("internal error: the zip writers stopped"))
    }

    /// Adds `bytes`, which lie within one block, at file offset `at`; writes the block once
    /// it is complete.
    fn edge(&self, at: u64, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let start = at - at % BLOCK as u64;
        let lead = (at - start) as usize;
        let mut edges = self.edges.lock().unwrap();
        let full = match edges.end {
            Some(end) if end - start < BLOCK as u64 => (end - start) as usize,
            _ => BLOCK,
        };
        let key = start / BLOCK as u64;
        let (block, filled) = (edges.blocks)
            .entry(key)
            .or_insert_with(|| (AlignedBuf::new(BLOCK), 0));
        block[lead..lead + bytes.len()].copy_from_slice(bytes);
        *filled += bytes.len();
        if *filled < full {
            return Ok(());
        }
        let (buf, _) = edges.blocks.remove(&key).expect("present");
        drop(edges);
        self.send(Job {
            buf,
            from: 0,
            to: BLOCK,
            at: start,
        })
    }

    /// Waits for every write; the first error, if any.
    fn finish(mut self) -> io::Result<()> {
        drop(self.jobs.take());
        let mut result = Ok(());
        for h in self.writers.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("internal error: a zip writer panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        let left = self.edges.lock().unwrap().blocks.len();
        if left > 0 {
            return Err(io::Error::other(format!(
                "internal error: {left} partial blocks of the zip were never completed"
            )));
        }
        Ok(())
    }
}

/// A writer thread: writes each job's bytes (all aligned) until the channel closes. After an
/// error it keeps taking jobs, so their senders never block, and returns the first error.
fn write_jobs(
    file: &std::fs::File,
    jobs: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>,
) -> io::Result<()> {
    let mut result = Ok(());
    loop {
        let job = jobs.lock().unwrap().recv();
        let Ok(job) = job else {
            return result;
        };
        if result.is_ok() {
            result = write_direct(file, &job.buf[job.from..job.to], job.at);
        }
        // Dropping the job's buffer gives it back to its pool.
    }
}

/// One direct `pwrite` of aligned bytes. A short write (the disk filling up) would leave an
/// unaligned remainder that direct writes cannot finish, so it is an error.
fn write_direct(file: &std::fs::File, bytes: &[u8], at: u64) -> io::Result<()> {
    loop {
        match file.write_at(bytes, at) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "short write ({n} of {} bytes): is the disk full?",
                        bytes.len()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sets or clears `O_DIRECT` on `file`'s open file description.
fn set_direct(file: &std::fs::File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl flag queries and updates on an open descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// A zeroed, page-aligned (so [`BLOCK`]-aligned) byte buffer, what direct writes need: an
/// anonymous mapping, faulted in up front (one fault-in for the whole buffer instead of one per
/// page; the allocator's aligned path would also clear it by hand). Run-sized buffers ask for
/// transparent huge pages: a direct write from 2 MiB pages needs a fraction of the block
/// layer's segments and requests (and the page pinning) that 4 KiB pages do.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// The whole mapping (`ptr` may lie past its start, aligned for huge pages).
    map: (*mut libc::c_void, usize),
    /// The pool it is on loan from: dropping it gives it back there (so no error path can
    /// lose one and leave the pool's other borrowers waiting).
    pool: Option<std::sync::Arc<Pool>>,
}

// SAFETY: the buffer is uniquely owned, like a `Box<[u8]>`.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

const HUGE_PAGE: usize = 2 << 20;

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let huge = len >= HUGE_PAGE;
        let map_len = if huge { len + HUGE_PAGE } else { len.max(1) };
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if huge { 0 } else { libc::MAP_POPULATE };
        // SAFETY: a fresh private anonymous mapping; checked for failure.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(map_len, BLOCK).expect("a valid layout"),
            );
        }
        let mut ptr = map as *mut u8;
        if huge {
            let skip = (HUGE_PAGE - ptr as usize % HUGE_PAGE) % HUGE_PAGE;
            // SAFETY: `skip + len <= map_len`: the aligned start and the buffer stay inside
            // the mapping; madvise only changes how it is backed (failure just means 4 KiB
            // pages), and the populate touches it once, as a write would.
            unsafe {
                ptr = ptr.add(skip);
                let p = ptr as *mut libc::c_void;
                libc::madvise(p, len, libc::MADV_HUGEPAGE);
                if libc::madvise(p, len, libc::MADV_POPULATE_WRITE) != 0 {
                    for i in (0..len).step_by(BLOCK) {
                        ptr.add(i).write_volatile(0);
                    }
                }
            }
        }
        AlignedBuf {
            ptr: std::ptr::NonNull::new(ptr).expect("mmap gives non-null"),
            len,
            map: (map, map_len),
            pool: None,
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (zeroed, then written) for as long as
        // `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            // The same mapping goes back to the pool under a new owner.
            pool.give(AlignedBuf {
                ptr: self.ptr,
                len: self.len,
                map: self.map,
                pool: None,
            });
            return;
        }
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it outlives `self`
        // (a buffer given back to its pool returned above without unmapping).
        unsafe { libc::munmap(self.map.0, self.map.1) };
    }
}

/// Run buffers, reused: a fresh one costs page faults on every use. At most `max` exist;
/// taking one more waits until one comes back (the disk is behind).
struct Pool {
    size: usize,
    max: usize,
    free: std::sync::Mutex<(Vec<AlignedBuf>, usize)>,
    returned: std::sync::Condvar,
}

impl Pool {
    fn new(size: usize, max: usize) -> Pool {
        Pool {
            size,
            max,
            free: Default::default(),
            returned: Default::default(),
        }
    }

    /// A buffer on loan: dropping it gives it back.
    fn take(self: &std::sync::Arc<Self>) -> AlignedBuf {
        let mut free = self.free.lock().unwrap();
        let mut b = loop {
            if let Some(b) = free.0.pop() {
                break b;
            }
            if free.1 < self.max {
                free.1 += 1;
                drop(free);
                // Faulting in a new buffer takes milliseconds: not under the lock.
                break AlignedBuf::new(self.size);
            }
            free = self.returned.wait(free).unwrap();
        };
        b.pool = Some(self.clone());
        b
    }

    /// Takes a buffer back (from [`AlignedBuf`]'s `drop`).
    fn give(&self, b: AlignedBuf) {
        self.free.lock().unwrap().0.push(b);
        self.returned.notify_one();
    }
}

impl CopySink for StoredZip {
    fn run(&self) -> Box<dyn CopyRun + '_> {
        Box::new(Run {
            zip: self,
            buf: None,
            at: 0,
            span: 0,
            pending: Vec::new(),
            hashed: Vec::new(),
        })
    }
}

/// One thread's run of neighbouring entries, gathered in a buffer that mirrors their stretch
/// of the archive (headers and bytes, each at its place), and written in large pieces.
struct Run<'a> {
    zip: &'a StoredZip,
    /// Holds the stretch from `at % BLOCK` on; taken from the zip's pool when needed.
    buf: Option<AlignedBuf>,
    /// File offset of the gathered stretch.
    at: u64,
    /// Bytes of the archive gathered.
    span: usize,
    /// Entries gathered, not written yet. Their headers are filled in when the stretch is
    /// written.
    pending: Vec<Pending>,
    /// SHA-256 and CRC-32 of the entries added without a CRC, by index.
    hashed: Vec<(usize, Hashes)>,
}

/// An entry gathered in a [`Run`].
struct Pending {
    index: usize,
    /// Where its header ends in the run's buffer (and its bytes start).
    start: usize,
    crc32: Option<u32>,
}

impl Run<'_> {
    /// Hashes the gathered entries that need it (two at a time: [`sha256_lanes`]), fills in
    /// their headers and writes the stretch.
    fn flush(&mut self) -> io::Result<()> {
        if self.span == 0 {
            return Ok(());
        }
        let zip = self.zip;
        let mut buf = self.buf.take().expect("a gathered stretch has a buffer");
        let data = |p: &Pending| &buf[p.start..p.start + zip.sizes[p.index] as usize];
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
            buf[end - h.len()..end].copy_from_slice(&h);
        }
        self.pending.clear();
        let span = std::mem::take(&mut self.span);
        zip.put(buf, self.at, span)
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
        if self.span == 0 {
            self.at = at;
        }
        if self.buf.is_none() {
            self.buf = Some(self.zip.pool.take());
        }
        Ok(Some((self.at % BLOCK as u64) as usize + self.span))
    }

    /// Streams a large entry to its place in buffer-sized pieces, hashing it unless its CRC
    /// is known; the header goes in last.
    fn stream(
        &mut self,
        index: usize,
        src: &std::fs::File,
        size: u64,
        known_crc: Option<u32>,
    ) -> io::Result<Option<Hashes>> {
        use sha2::Digest;
        let zip = self.zip;
        let at = zip.offsets[index];
        let data = at + local_header_len(&zip.names[index]) as u64;
        let mut hash = known_crc
            .is_none()
            .then(|| (crc32fast::Hasher::new(), sha2::Sha256::new()));
        let mut done = 0u64;
        loop {
            let d = data + done;
            let lead = (d % BLOCK as u64) as usize;
            // Pieces end on a block boundary, so the next starts on one. Asking for one byte
            // more than is left finds a file that grew since it was listed.
            let want = ((RUN_BUFFER - lead) as u64).min(size - done + 1) as usize;
            let mut buf = zip.pool.take();
            let n = read_full(src, &mut buf[lead..lead + want], (size - done) as usize)?;
            if done + n as u64 > size {
                return Err(changed(size, done + n as u64));
            }
            if n == 0 {
                break;
            }
            if let Some((crc, sha)) = &mut hash {
                crc.update(&buf[lead..lead + n]);
                sha.update(&buf[lead..lead + n]);
            }
            zip.put(buf, d, n)?;
            done += n as u64;
            if n < want {
                // `read_full` stops short only at the end of the file.
                break;
            }
        }
        if done != size {
            return Err(changed(size, done));
        }
        let (crc, hashes) = match hash {
            Some((crc, sha)) => {
                let crc = crc.finalize();
                (crc, Some((sha.finalize().into(), crc)))
            }
            None => (known_crc.expect("known when not hashed"), None),
        };
        zip.put_bytes(at, &zip.header(index, crc))?;
        Ok(hashes)
    }
}

/// Reads into `buf` until it is full or the file ends; the bytes read.
///
/// A read that comes back short having delivered exactly `expect` bytes in all is taken as the
/// end of the (regular) file, without a second read to see 0: callers ask for one byte more
/// than they expect, so a file that grew fills the buffer instead. That saves a read per file
/// (10,000 syscalls for the bench tree).
fn read_full(src: &std::fs::File, buf: &mut [u8], expect: usize) -> io::Result<usize> {
    use std::io::Read;
    let mut got = 0;
    let mut src = src;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                let short = got + n < buf.len();
                got += n;
                if short && got == expect {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
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
        match self.room(at, head + size as usize)? {
            Some(start) => {
                let data = start + head;
                // One byte more than expected finds a file that grew since it was listed.
                let buf = self.buf.as_mut().expect("room gives a buffer");
                let got = read_full(src, &mut buf[data..data + size as usize + 1], size as usize)?;
                if got as u64 != size {
                    return Err(changed(size, got as u64));
                }
                self.span += head + size as usize;
                self.pending.push(Pending {
                    index,
                    start: data,
                    crc32,
                });
            }
            None => {
                if let Some(h) = self.stream(index, src, size, crc32)? {
                    self.hashed.push((index, h));
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<Vec<(usize, Hashes)>> {
        self.flush()?;
        Ok(std::mem::take(&mut self.hashed))
    }
}

fn changed(expected: u64, got: u64) -> io::Error {
    io::Error::other(format!(
        "changed while being packed ({got} bytes, expected {expected}); run again"
    ))
}

const WRITEBACK_CHUNK: u64 = 16 << 20;

/// Asks the kernel to start writing `f` back to disk, without waiting.
fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; failure only loses the head start.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
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
    // Exactly the bytes that were hashed, or nothing: the archive's name is their digest.
    if uncompressed != e.size
        || e.crc32.is_some_and(|c| c != crc)
        || e.sha256
            .is_some_and(|h| h != <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&raw)))
    {
        return Err(io::Error::other(format!(
            "{}: changed while being packed ({uncompressed} bytes, {} expected, content differs from what was hashed); run again",
            e.source.display(),
            e.size
        )));
    }
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
                    sha256: Some(<sha2::Sha256 as sha2::Digest>::digest(&body).into()),
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
    fn write_zip_refuses_bytes_other_than_those_hashed() {
        use sha2::Digest;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(
            &p,
            "hashed content, long enough to be compressed: ".repeat(4),
        )
        .unwrap();
        let hashed = std::fs::read(&p).unwrap();
        let entry = ZipEntry {
            name: "pkg/f".into(),
            source: p.clone(),
            mode: 0o644,
            size: hashed.len() as u64,
            crc32: None,
            sha256: Some(sha2::Sha256::digest(&hashed).into()),
        };
        for level in [0, 1, 6] {
            assert!(write_zip(Vec::new(), std::slice::from_ref(&entry), level).is_ok());
        }
        // Changed after hashing, same size: its bytes must not go out under the old hash.
        let mut other = hashed.clone();
        other[0] ^= 1;
        std::fs::write(&p, &other).unwrap();
        for level in [0, 1, 6] {
            let e = write_zip(Vec::new(), std::slice::from_ref(&entry), level)
                .unwrap_err()
                .to_string();
            assert!(e.contains("changed while being packed"), "{level}: {e}");
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

    /// Entries whose offsets fall everywhere relative to 4 KiB blocks: empty, tiny, one byte
    /// either side of a block, mid-sized, and larger than a run buffer.
    fn awkward_entries(dir: &std::path::Path) -> Vec<ZipEntry> {
        let sizes = [
            0usize,
            1,
            4095,
            4096,
            4097,
            10_000,
            (100 << 10) + 3,
            RUN_BUFFER - 7,
            RUN_BUFFER + BLOCK + 5,
            3,
            (9 << 20) + 1,
            777,
        ];
        let mut es = Vec::new();
        for (i, size) in sizes.iter().chain(&[1500; 40]).enumerate() {
            let body: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
            let p = dir.join(format!("a{i}"));
            std::fs::write(&p, &body).unwrap();
            es.push(ZipEntry {
                name: format!("pkg/{}/a{i}", "d".repeat(i % 13)),
                source: p,
                mode: 0o644,
                size: *size as u64,
                crc32: Some(crc32fast::hash(&body)),
                sha256: None,
            });
        }
        es
    }

    /// Builds a STORED zip of `es` through [`StoredZip`] the way the hashing pass does: runs
    /// of neighbours on several threads, out of order, half of them without a known CRC.
    fn build_stored(out: &std::path::Path, es: &[ZipEntry], try_direct: bool) -> (u64, bool) {
        let f = std::fs::File::create(out).unwrap();
        let zip = StoredZip::with(f, es.iter().map(|e| (e.name.clone(), e.size)), try_direct);
        let direct = zip.direct.is_some();
        let runs: Vec<Vec<usize>> = (0..es.len())
            .collect::<Vec<_>>()
            .chunks(5)
            .map(<[usize]>::to_vec)
            .collect();
        let crcs: Vec<u32> = es.iter().map(|e| e.crc32.unwrap()).collect();
        std::thread::scope(|s| {
            for run in runs.iter().rev() {
                let (zip, crcs) = (&zip, &crcs);
                s.spawn(move || {
                    let mut r = zip.run();
                    for &i in run {
                        let src = std::fs::File::open(&es[i].source).unwrap();
                        let known = (i % 2 == 0).then_some(crcs[i]);
                        r.add(i, &src, es[i].size, known).unwrap();
                    }
                    for (i, (_, crc)) in r.finish().unwrap() {
                        assert_eq!(crc, crcs[i], "CRC of entry {i}");
                    }
                });
            }
        });
        let n = zip
            .finish(es.iter().map(|e| e.mode).zip(crcs.iter().copied()))
            .unwrap();
        (n, direct)
    }

    #[test]
    fn stored_zip_gives_the_streaming_writers_bytes_written_directly_or_buffered() {
        let d = tempfile::tempdir().unwrap();
        let es = awkward_entries(d.path());
        let mut expected = Vec::new();
        write_zip(&mut expected, &es, 0).unwrap();
        for try_direct in [true, false] {
            let out = d.path().join(format!("out-{try_direct}.zip"));
            let (n, direct) = build_stored(&out, &es, try_direct);
            let got = std::fs::read(&out).unwrap();
            assert_eq!(n, got.len() as u64);
            assert!(
                got == expected,
                "direct={direct}: bytes differ from write_zip(level 0)"
            );
            // Written directly exactly where the filesystem is one that does that well.
            let f = std::fs::File::open(&out).unwrap();
            use std::os::fd::AsRawFd;
            let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::fstatfs(f.as_raw_fd(), &mut fs) }, 0);
            let capable = matches!(fs.f_type as i64, 0xEF53 | 0x5846_5342);
            assert_eq!(direct, try_direct && capable, "f_type {:#x}", fs.f_type);
            // Readable afterwards with plain (unaligned) I/O: O_DIRECT is off again.
            let mut z = ::zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
            let mut b = Vec::new();
            z.by_index(10).unwrap().read_to_end(&mut b).unwrap();
            assert!(b == std::fs::read(&es[10].source).unwrap());
        }
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
                sha256: None,
            })
            .collect();
        let mut buf = Vec::new();
        write_zip(&mut buf, &es, 1).unwrap();
        let z = ::zip::ZipArchive::new(std::io::Cursor::new(buf)).unwrap();
        assert_eq!(z.len(), 70_000);
    }
}
