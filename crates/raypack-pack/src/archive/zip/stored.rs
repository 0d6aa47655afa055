//! The STORED fast path: [`StoredZip`] writes every entry at its precomputed offset, in large
//! aligned pieces from several threads (direct I/O where the filesystem does it well), hashing
//! as it copies; [`write_stored_file`] drives it for a list of entries. Same bytes as
//! `write_zip(.., 0)` (see the module above for the format).

use super::*;

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
    pub(super) direct: Option<Direct>,
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
pub(super) const BLOCK: usize = 4096;

/// Up to this many bytes of neighbouring entries (headers and data) are gathered and written
/// with one call: the disk (and, for buffered writes, the kernel) does far better per byte with
/// large writes than with file-sized ones. With the two blocks of slack a stretch may need at
/// its edges, a run buffer is exactly one 2 MiB huge page.
pub(super) const RUN_BUFFER: usize = HUGE_PAGE - 2 * BLOCK;

/// Buffers a zip may have out at once (hashing threads, writer queue, writes in flight): the
/// bound on its memory, and how far hashing may run ahead of the disk. Kept small on purpose:
/// fresh memory is not free (faulting in and zeroing 32 MiB cost a cold `env` ~40 ms of CPU
/// on the test VM, 12% of the whole), and six 2 MiB buffers keep two hashing threads and four
/// writers busy. Machines with more threads get one more buffer per thread ([`pool_buffers`]).
pub(super) const POOL_BUFFERS: usize = 6;

/// [`POOL_BUFFERS`], or one buffer per hashing thread plus one per writer when that is more
/// (each hashing thread holds at most one buffer at a time, each writer one in flight), so a
/// many-core machine is not throttled to six buffers.
pub(super) fn pool_buffers() -> usize {
    POOL_BUFFERS.max(rayon::current_num_threads() + WRITERS)
}

/// Threads writing directly: each write blocks its thread until the disk has it, so several
/// keep requests queued at the disk while others are being submitted. Cold pack of the bench
/// tree on the 2-core test VM (4 MiB buffers, 4 KiB pages), medians of 5–9 interleaved runs:
/// 1 writer 266 ms, 2 writers 209 ms, 4 writers 183–188 ms, 8 writers 176–179 ms (within the
/// noise of 4).
pub(super) const WRITERS: usize = 4;

/// A stretch of the archive ready to write: `buf[from..to]` belongs at file offset `at`.
pub(super) struct Job {
    buf: AlignedBuf,
    from: usize,
    to: usize,
    at: u64,
}

/// State of a zip being written with `O_DIRECT`.
pub(super) struct Direct {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    writers: Vec<std::thread::JoinHandle<io::Result<()>>>,
    edges: std::sync::Mutex<Edges>,
}

/// Partial blocks, by block index: the bytes each stretch has put in, and how many. A block
/// is written once it is full (or, at the end, once it holds everything up to the archive's
/// end).
#[derive(Default)]
pub(super) struct Edges {
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

    pub(super) fn with(
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
pub(super) fn write_jobs(
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
pub(super) fn write_direct(file: &std::fs::File, bytes: &[u8], at: u64) -> io::Result<()> {
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
pub(super) fn set_direct(file: &std::fs::File, on: bool) -> io::Result<()> {
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

pub(super) fn align_up(x: u64) -> u64 {
    x.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// A zeroed, page-aligned (so [`BLOCK`]-aligned) byte buffer, what direct writes need: an
/// anonymous mapping, faulted in up front (one fault-in for the whole buffer instead of one per
/// page; the allocator's aligned path would also clear it by hand). Run-sized buffers ask for
/// transparent huge pages: a direct write from 2 MiB pages needs a fraction of the block
/// layer's segments and requests (and the page pinning) that 4 KiB pages do.
pub(super) struct AlignedBuf {
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

pub(super) const HUGE_PAGE: usize = 2 << 20;

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
pub(super) struct Pool {
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
pub(super) struct Run<'a> {
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
pub(super) struct Pending {
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
pub(super) fn read_full(src: &std::fs::File, buf: &mut [u8], expect: usize) -> io::Result<usize> {
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

pub(super) fn changed(expected: u64, got: u64) -> io::Error {
    io::Error::other(format!(
        "changed while being packed ({got} bytes, expected {expected}); run again"
    ))
}

pub(super) const WRITEBACK_CHUNK: u64 = 16 << 20;

/// Asks the kernel to start writing `f` back to disk, without waiting.
pub(super) fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; failure only loses the head start.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

pub(super) fn too_large(size: u64, source: &Path) -> io::Result<()> {
    if size >= MAX32 {
        return Err(io::Error::other(format!(
            "{}: files of 4 GiB or more are not supported in runtime_env packages",
            source.display()
        )));
    }
    Ok(())
}
