//! Gzip dependency layers assembled from per-wheel fragments.
//!
//! Installing a wheel into a layer means unzipping it, writing tar entries and compressing
//! them, and compressing is most of the cost. So each wheel is installed once per target
//! layout into a *fragment*: its tar entries (no end-of-archive), compressed as raw DEFLATE
//! pieces that end in sync flushes ([`raypack_pack::archive::pgzip::deflate`]), kept in the cache with
//! their CRC-32, length and file list. A layer is then a gzip header, a piece with the layer's
//! own entries (directories, whiteouts), the fragments' bytes as they are, a final piece with
//! the tar end-of-archive, and a trailer whose CRC-32 is the fragments' CRCs combined: one
//! gzip member, which any reader takes, built without compressing the wheels again. Adding
//! one package to a set compresses that package only. (uv keeps unpacked wheels in its cache
//! for the same reason.)
//!
//! The layer's diff_id still needs SHA-256 over the uncompressed tar: the fragments are
//! inflated for it, on a second thread, while the first copies and hashes the compressed bytes.
//!
//! Determinism: a fragment depends only on the wheel's bytes and the key's inputs (layout
//! version, scheme, owner, mtime, level); a layer lists its entries piece, then fragments in
//! the order given (callers sort by name), so the same wheels give the same blob everywhere.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::wheel::{self, Scheme, WheelError};
use raypack_pack::archive::tar::{LayerEntry, write_layer};
use raypack_pack::archive::{pgzip, zst};

/// Bumped whenever a fragment's content or encoding changes.
pub(crate) const FRAGMENT_VERSION: &str = "raypack-fragment-v3";

/// One wheel to install: where it is, its file name and its SHA-256 (hex, as locks give it).
#[derive(Debug, Clone)]
pub struct WheelFile {
    /// The wheel on disk.
    pub path: PathBuf,
    /// Its file name (tags decide the install).
    pub filename: String,
    /// SHA-256 (hex) of the wheel.
    pub sha256: String,
}

/// An installed wheel, compressed and cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fragment {
    /// The distribution's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its `.dist-info` directory (image path).
    pub dist_info: String,
    /// The image paths of the files it installs (no leading '/'), sorted.
    pub paths: Vec<String>,
    /// The files it was built without because a later distribution ships them
    /// (path → identical), from [`wheel::plan_overlaps`].
    pub lost: std::collections::BTreeMap<String, bool>,
    /// CRC-32 and length of the uncompressed tar fragment.
    pub crc32: u32,
    /// Length of the uncompressed tar fragment.
    pub len: u64,
    /// Compressed length of each DEFLATE piece (each inflates on its own to
    /// [`pgzip::CHUNK`] bytes, the last to the rest), so fragments inflate in parallel.
    /// Empty for a zstd fragment (one frame).
    pub pieces: Vec<u64>,
    /// The zstd level of a zstd fragment (`None`: DEFLATE pieces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd: Option<i32>,
    /// Whether it was built in this run (not found in the cache).
    #[serde(skip)]
    pub built: bool,
    /// Its cache key: the wheel, the layout and the files it lost.
    #[serde(skip)]
    pub key: String,
    #[serde(skip)]
    data: PathBuf,
}

/// What a layer is: the digest and size of its gzip blob, and its diff_id.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// `sha256:` of the gzip blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the gzip blob.
    pub size: u64,
}

/// How wheels are installed into fragments (everything a fragment's bytes depend on, besides
/// the wheel).
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// Where files go in the image.
    pub scheme: &'a Scheme,
    /// Owner (uid, gid) of every entry.
    pub owner: (u32, u32),
    /// Modification time of every entry.
    pub mtime: u64,
    /// gzip level.
    pub level: u32,
    /// zstd level, for zstd layers (`None`: gzip). A fragment is kept per codec.
    pub zstd: Option<i32>,
    /// Compiles `.pyc` files into each fragment, when set.
    pub bytecode: Option<&'a super::bytecode::Compiler>,
}

impl Layout<'_> {
    /// The cache key of `wheel`'s fragment built without `lost`.
    pub fn fragment_key(&self, wheel: &WheelFile, lost: &Lost) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{FRAGMENT_VERSION}\n{}\n{:?}\n{}:{}\n{}\n{}\n",
            wheel.sha256.trim_start_matches("sha256:"),
            self.scheme,
            self.owner.0,
            self.owner.1,
            self.mtime,
            self.level
        ));
        for (path, identical) in lost {
            h.update(format!("lost {path} {identical}\n"));
        }
        // gzip keys stay as they were before zstd existed.
        if let Some(level) = self.zstd {
            h.update(format!("zstd {level}\n"));
        }
        if let Some(c) = self.bytecode {
            h.update(format!("bytecode {}\n", c.key()));
        }
        hex::encode(h.finalize())
    }
}

/// Files a distribution loses to one installed after it: path → whether the bytes are
/// identical ([`wheel::plan_overlaps`]).
pub type Lost = std::collections::BTreeMap<String, bool>;

/// Decides, for wheels installed together, which files each one loses to another that ships
/// the same path (pip's order: dependencies first, the later file wins). Reads each wheel's
/// file list, RECORD and entry points only (nothing is decompressed but `#!python` scripts),
/// so it costs little even when every layer is then found in a cache. `lost[i]` goes with
/// `wheels[i]` into [`Layout::fragment_key`] and [`fragments`].
pub fn overlaps(
    wheels: &[WheelFile],
    layout: &Layout<'_>,
) -> Result<(Vec<Lost>, Vec<wheel::Overlap>), WheelError> {
    Ok(overlaps_of(&shipped_files(
        wheels,
        layout.scheme,
        layout.owner,
    )?))
}

/// What one wheel installs, as overlap resolution needs it, owned so that it can be stored
/// (the shared layer cache keeps it for heavy wheels, so a machine without the wheel can still
/// decide overlaps and compute layer keys). It depends on the wheel and the layout's scheme
/// and owner only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShippedFiles {
    /// The distribution's name.
    pub name: String,
    /// Its `Requires-Dist` names.
    pub requires: Vec<String>,
    /// Each file's image path and RECORD hash.
    pub files: Vec<(String, Option<String>)>,
}

/// [`ShippedFiles`] of each wheel, in order (reads file lists, RECORDs and entry points),
/// installed with `scheme`, owned by `owner`.
pub fn shipped_files(
    wheels: &[WheelFile],
    scheme: &wheel::Scheme,
    owner: (u32, u32),
) -> Result<Vec<ShippedFiles>, WheelError> {
    let scratch = tempfile::tempdir().map_err(|source| WheelError::Io {
        wheel: String::new(),
        source,
    })?;
    let pairs: Vec<(PathBuf, String)> = wheels
        .iter()
        .map(|w| (w.path.clone(), w.filename.clone()))
        .collect();
    let installed = wheel::install_all(&pairs, scheme, owner, true, scratch.path())?;
    Ok(installed
        .iter()
        .map(|i| {
            let s = i.shipped();
            ShippedFiles {
                name: s.name.to_string(),
                requires: s.requires.to_vec(),
                files: s
                    .files
                    .iter()
                    .map(|(p, h)| (p.to_string(), h.map(str::to_string)))
                    .collect(),
            }
        })
        .collect())
}

/// [`overlaps`] from what each wheel ships: `lost[i]` goes with `shipped[i]`.
pub fn overlaps_of(shipped: &[ShippedFiles]) -> (Vec<Lost>, Vec<wheel::Overlap>) {
    let views: Vec<wheel::Shipped> = shipped
        .iter()
        .map(|s| wheel::Shipped {
            name: &s.name,
            requires: &s.requires,
            files: s
                .files
                .iter()
                .map(|(p, h)| (p.as_str(), h.as_deref()))
                .collect(),
        })
        .collect();
    let plan = wheel::plan_overlaps(&views);
    (plan.lose, plan.overlaps)
}

/// The fragments of `wheels` (in the same order), taken from `dir` or built there (in
/// parallel) for the wheels not seen before with this layout. `lost[i]` (from [`overlaps`])
/// are files wheel `i` is built without: whichever layers distributions that ship one file
/// land in, the image holds the winner's, and every RECORD stays true.
pub fn fragments(
    dir: &Path,
    wheels: &[WheelFile],
    layout: &Layout<'_>,
    lost: &[Lost],
) -> Result<Vec<Fragment>, WheelError> {
    use rayon::prelude::*;
    let io = |wheel: &WheelFile| {
        let wheel = wheel.filename.clone();
        move |source| WheelError::Io { wheel, source }
    };
    assert_eq!(wheels.len(), lost.len(), "one lost set per wheel");
    wheels
        .par_iter()
        .zip(lost.par_iter())
        .map(|(w, lost)| {
            let key = layout.fragment_key(w, lost);
            let ext = if layout.zstd.is_some() {
                "zst"
            } else {
                "deflate"
            };
            let (meta, data) = (
                dir.join(format!("{key}.json")),
                dir.join(format!("{key}.{ext}")),
            );
            if let Some(mut f) = load(&meta, &data) {
                f.key = key;
                return Ok(f);
            }
            std::fs::create_dir_all(dir).map_err(io(w))?;
            let mut f = build(w, layout, lost, dir, &meta, &data)?;
            f.key = key;
            Ok(f)
        })
        .collect()
}

fn load(meta: &Path, data: &Path) -> Option<Fragment> {
    let mut f: Fragment = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    data.is_file().then_some(())?;
    f.data = data.to_path_buf();
    Some(f)
}

/// Installs `w` and compresses its tar entries into `data`; `meta` is written last, so a
/// fragment is only ever found whole.
fn build(
    w: &WheelFile,
    layout: &Layout<'_>,
    lost: &Lost,
    dir: &Path,
    meta: &Path,
    data: &Path,
) -> Result<Fragment, WheelError> {
    let io = |source| WheelError::Io {
        wheel: w.filename.clone(),
        source,
    };
    let scratch = tempfile::tempdir_in(dir).map_err(io)?;
    let installed = wheel::install(
        &w.path,
        &w.filename,
        layout.scheme,
        layout.owner,
        true,
        &scratch.path().join("unpacked"),
    )?
    .without(lost);
    let installed = match layout.bytecode {
        Some(c) => installed.with_bytecode(c, &scratch.path().join("pyc"))?,
        None => installed,
    };
    let mut paths: Vec<String> = installed.entries.iter().map(|e| e.path.clone()).collect();
    paths.sort();
    let mut entries = installed.entries;
    let tar = tempfile::NamedTempFile::new_in(scratch.path()).map_err(io)?;
    let end = write_fragment(tar.as_file(), &mut entries, layout.mtime).map_err(io)?;
    let out = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let input =
        BufReader::with_capacity(1 << 20, std::fs::File::open(tar.path()).map_err(io)?).take(end);
    let (crc32, len, pieces) = match layout.zstd {
        None => {
            let (mut writer, crc, pieces) = pgzip::deflate(
                input,
                io::BufWriter::with_capacity(1 << 20, out.as_file()),
                layout.level,
                false,
            )
            .map_err(io)?;
            writer.flush().map_err(io)?;
            (crc.sum(), crc.amount() as u64, pieces)
        }
        Some(level) => {
            // One frame; the CRC and length are kept as for gzip (the fragment's identity).
            let mut input = flate2::CrcReader::new(input);
            zst::compress(
                &mut input,
                io::BufWriter::with_capacity(1 << 20, out.as_file()),
                level,
            )
            .map_err(io)?
            .flush()
            .map_err(io)?;
            (input.crc().sum(), input.crc().amount() as u64, Vec::new())
        }
    };
    let fragment = Fragment {
        name: installed.name,
        version: installed.version,
        dist_info: installed.dist_info,
        paths,
        lost: lost.clone(),
        crc32,
        len,
        pieces,
        zstd: layout.zstd,
        built: true,
        key: String::new(),
        data: data.to_path_buf(),
    };
    out.persist(data).map_err(|e| io(e.error))?;
    let json = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::fs::write(json.path(), serde_json::to_vec(&fragment).expect("json")).map_err(io)?;
    json.persist(meta).map_err(|e| io(e.error))?;
    Ok(fragment)
}

/// The tar end-of-archive: two zero blocks.
const TAR_END: usize = 1024;

/// Writes `entries` as tar into `file` without the end-of-archive blocks; returns the length.
fn write_fragment(file: &std::fs::File, entries: &mut [LayerEntry], mtime: u64) -> io::Result<u64> {
    let mut w = write_layer(io::BufWriter::with_capacity(1 << 20, file), entries, mtime)?;
    w.flush()?;
    drop(w);
    // The tar crate always finishes an archive with two zero blocks; a fragment is not the
    // end of one.
    let len = file.metadata()?.len();
    len.checked_sub(TAR_END as u64)
        .ok_or_else(|| io::Error::other("tar shorter than its end-of-archive blocks"))
}

/// Fragments (from [`fragments`]) in name order, the order a layer lists them in, with the
/// directory entries their layer needs below the scheme's site-packages and scripts
/// directories.
pub fn prepare(mut frags: Vec<Fragment>, layout: &Layout<'_>) -> (Vec<Fragment>, Vec<LayerEntry>) {
    frags.sort_by(|a, b| a.name.cmp(&b.name));
    let roots = [
        layout.scheme.site_packages.clone(),
        layout.scheme.scripts.clone(),
    ];
    let dirs = directories(&frags, &roots, layout.owner);
    (frags, dirs)
}

/// The directory entries a layer of these fragments needs: every directory below the owned
/// roots (site-packages, bin, …) that holds one of their files, so namespace packages merge.
pub fn directories(
    fragments: &[Fragment],
    owned_roots: &[String],
    owner: (u32, u32),
) -> Vec<LayerEntry> {
    wheel::owned_directories(
        fragments
            .iter()
            .flat_map(|f| f.paths.iter().map(String::as_str)),
        owned_roots,
        owner,
    )
}

/// Writes a gzip layer to `out`: `own` entries (directories, whiteouts; sorted here), then the
/// fragments in the given order, then the end of the archive.
pub fn assemble(
    fragments: &[Fragment],
    own: &mut [LayerEntry],
    mtime: u64,
    level: u32,
    out: &std::fs::File,
) -> io::Result<Assembled> {
    let mut head_tar = Vec::new();
    if !own.is_empty() {
        head_tar = write_layer(Vec::new(), own, mtime)?;
        // Not the end of the archive either (see `write_fragment`).
        head_tar.truncate(head_tar.len() - TAR_END);
    }
    let tail_tar = vec![0u8; TAR_END];
    if let Some(zstd) = fragments.first().and_then(|f| f.zstd) {
        return assemble_zstd(fragments, &head_tar, &tail_tar, zstd, out);
    }
    let head = pgzip::deflate_bytes(&head_tar, level, false)?;
    let tail = pgzip::deflate_bytes(&tail_tar, level, true)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head_tar);
    for f in fragments {
        crc.combine(&crc32fast::Hasher::new_with_initial_len(f.crc32, f.len));
    }
    crc.update(&tail_tar);
    let len = head_tar.len() as u64 + fragments.iter().map(|f| f.len).sum::<u64>() + TAR_END as u64;

    let (compressed, diff_id) = rayon::join(
        || {
            let trailer = pgzip::gzip_trailer(crc.clone().finalize(), len);
            write_blob(
                out,
                &[&pgzip::GZIP_HEADER, &head],
                fragments,
                &[&tail, &trailer],
            )
        },
        || -> io::Result<String> {
            let mut h = Sha256::new();
            h.update(&head_tar);
            uncompressed_sha(fragments, &mut h)?;
            h.update(&tail_tar);
            Ok(hex::encode(h.finalize()))
        },
    );
    let (digest, size) = compressed?;
    Ok(Assembled {
        digest: format!("sha256:{digest}"),
        diff_id: format!("sha256:{}", diff_id?),
        size,
    })
}

/// Feeds the fragments' uncompressed bytes to `h`, in order: pieces are read and inflated in
/// parallel batches (every piece inflates on its own), hashed in order.
fn uncompressed_sha(fragments: &[Fragment], h: &mut Sha256) -> io::Result<()> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    // (fragment, offset in its file, compressed length, inflated length)
    let mut pieces = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        let mut at = 0u64;
        let mut left = f.len;
        for &n in &f.pieces {
            let out = left.min(pgzip::CHUNK as u64);
            pieces.push((i, at, n, out));
            at += n;
            left -= out;
        }
        if left != 0 {
            return Err(stale(f, "its pieces do not add up to its length"));
        }
    }
    let files = fragments
        .iter()
        .map(|f| std::fs::File::open(&f.data))
        .collect::<io::Result<Vec<_>>>()?;
    let inflate = |chunk: &[(usize, u64, u64, u64)]| -> io::Result<Vec<Vec<u8>>> {
        chunk
            .par_iter()
            .map(|&(i, at, n, len)| {
                let mut raw = vec![0u8; n as usize];
                files[i].read_exact_at(&mut raw, at)?;
                let mut plain = Vec::with_capacity(len as usize);
                inflate_open(raw.as_slice(), |b| plain.extend_from_slice(b))?;
                if plain.len() as u64 != len {
                    return Err(stale(&fragments[i], "a piece inflates to the wrong length"));
                }
                Ok(plain)
            })
            .collect()
    };
    // Hash batch k while batch k+1 inflates.
    let batch = rayon::current_num_threads().max(1) * 4;
    let mut ready: Vec<Vec<u8>> = Vec::new();
    for chunk in pieces.chunks(batch) {
        let done = std::mem::take(&mut ready);
        let (_, next) = rayon::join(
            || {
                for p in done {
                    h.update(p);
                }
            },
            || inflate(chunk),
        );
        ready = next?;
    }
    for p in ready {
        h.update(p);
    }
    Ok(())
}

/// A zstd layer: a frame of `head_tar`, the fragments' frames as they are, a frame of the
/// tar end-of-archive. Its diff_id is computed by decoding the fragments (zstd decodes far
/// faster than it encodes).
fn assemble_zstd(
    fragments: &[Fragment],
    head_tar: &[u8],
    tail_tar: &[u8],
    level: i32,
    out: &std::fs::File,
) -> io::Result<Assembled> {
    if let Some(f) = fragments.iter().find(|f| f.zstd != Some(level)) {
        return Err(stale(
            f,
            "a zstd layer mixes fragments of other codecs or levels",
        ));
    }
    let head = if head_tar.is_empty() {
        Vec::new()
    } else {
        zst::compress_bytes(head_tar, level)?
    };
    let tail = zst::compress_bytes(tail_tar, level)?;
    let (compressed, diff_id) = rayon::join(
        || write_blob(out, &[&head], fragments, &[&tail]),
        || -> io::Result<String> {
            let mut h = Sha256::new();
            h.update(head_tar);
            for f in fragments {
                let src = BufReader::with_capacity(1 << 20, std::fs::File::open(&f.data)?);
                let n = io::copy(&mut zst::decoder(src)?, &mut wheel::HashWriter(&mut h))?;
                if n != f.len {
                    return Err(stale(f, "it decodes to the wrong length"));
                }
            }
            h.update(tail_tar);
            Ok(hex::encode(h.finalize()))
        },
    );
    let (digest, size) = compressed?;
    Ok(Assembled {
        digest: format!("sha256:{digest}"),
        diff_id: format!("sha256:{}", diff_id?),
        size,
    })
}

/// Writes a layer blob to `out`: the `head` pieces, every fragment's bytes as they are, the
/// `tail` pieces, hashing what is written; returns the hex SHA-256 and the length.
fn write_blob(
    out: &std::fs::File,
    head: &[&[u8]],
    fragments: &[Fragment],
    tail: &[&[u8]],
) -> io::Result<(String, u64)> {
    let mut w = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::new(),
        n: 0,
    };
    for piece in head {
        w.write_all(piece)?;
    }
    for f in fragments {
        let mut src = std::fs::File::open(&f.data)?;
        io::copy(&mut src, &mut w)?;
    }
    for piece in tail {
        w.write_all(piece)?;
    }
    w.inner.flush()?;
    Ok((hex::encode(w.hash.finalize()), w.n))
}

fn stale(f: &Fragment, why: &str) -> io::Error {
    io::Error::other(format!(
        "cached fragment of {} {} is damaged ({why}); remove {}",
        f.name,
        f.version,
        f.data.display()
    ))
}

/// Inflates a raw DEFLATE stream that ends in a sync flush rather than a final block (a
/// fragment), handing the output to `sink`; returns the output length. (flate2's readers
/// call such a stream truncated.)
fn inflate_open(mut src: impl Read, mut sink: impl FnMut(&[u8])) -> io::Result<u64> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut d = Decompress::new(false);
    let mut input = vec![0u8; 1 << 20];
    let mut output = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    loop {
        if start == end && !eof {
            end = src.read(&mut input)?;
            start = 0;
            eof = end == 0;
        }
        let (before_in, before_out) = (d.total_in(), d.total_out());
        let status = d
            .decompress(&input[start..end], &mut output, FlushDecompress::None)
            .map_err(io::Error::other)?;
        start += (d.total_in() - before_in) as usize;
        let produced = (d.total_out() - before_out) as usize;
        sink(&output[..produced]);
        if status == Status::StreamEnd {
            return Err(io::Error::other("fragment holds a final DEFLATE block"));
        }
        if eof && start == end && produced < output.len() {
            return Ok(d.total_out());
        }
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel with `files` (path, body) plus METADATA, WHEEL and RECORD.
    fn wheel(dir: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> WheelFile {
        use base64::Engine;
        let filename = format!("{name}-1.0-py3-none-any.whl");
        let di = format!("{name}-1.0.dist-info");
        let mut all: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(p, b)| (p.to_string(), b.clone()))
            .collect();
        all.push((
            format!("{di}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n").into_bytes(),
        ));
        all.push((
            format!("{di}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ));
        let mut record = String::new();
        for (p, b) in &all {
            record.push_str(&format!(
                "{p},sha256={},{}\n",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(b)),
                b.len()
            ));
        }
        record.push_str(&format!("{di}/RECORD,,\n"));
        all.push((format!("{di}/RECORD"), record.into_bytes()));
        let path = dir.join(&filename);
        let mut z = ::zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (p, b) in &all {
            z.start_file(p.as_str(), ::zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
        WheelFile {
            sha256: hex::encode(raypack_pack::collect::hash_file(&path).unwrap()),
            path,
            filename,
        }
    }

    fn layer_of(frags: &[Fragment], scheme: &Scheme, out: &Path) -> Assembled {
        let roots = [scheme.site_packages.clone(), scheme.scripts.clone()];
        let mut own = directories(frags, &roots, (1000, 100));
        let f = std::fs::File::create(out).unwrap();
        assemble(frags, &mut own, 0, 6, &f).unwrap()
    }

    #[test]
    fn layers_from_cached_fragments_are_one_valid_gzip_member_with_true_digests() {
        let d = tempfile::tempdir().unwrap();
        let noise: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Two distributions sharing a namespace package; one spans several DEFLATE pieces.
        let a = wheel(
            d.path(),
            "alpha",
            &[
                ("ns/alpha/__init__.py", b"A = 1\n".to_vec()),
                ("ns/alpha/blob.bin", noise),
            ],
        );
        let b = wheel(
            d.path(),
            "beta",
            &[("ns/beta/__init__.py", b"B = 2\n".to_vec())],
        );
        let c = wheel(d.path(), "gamma", &[("gamma.py", b"G = 3\n".to_vec())]);
        let scheme = Scheme::for_python(
            "/opt/py/bin/python",
            "3.11",
            "/opt/py/lib/python3.11/site-packages",
        );
        let layout = Layout {
            scheme: &scheme,
            owner: (1000, 100),
            mtime: 0,
            level: 6,
            zstd: None,
            bytecode: None,
        };
        let cache = d.path().join("fragments");
        let (lost, overlaps) = overlaps(&[a.clone(), b.clone()], &layout).unwrap();
        assert!(overlaps.is_empty(), "{overlaps:?}");
        let frags = fragments(&cache, &[a.clone(), b.clone()], &layout, &lost).unwrap();
        assert!(frags.iter().all(|f| f.built));
        let out = d.path().join("layer.tgz");
        let first = layer_of(&frags, &scheme, &out);

        // The blob's digest and size are those of the file; the diff_id that of the tar inside,
        // read as one gzip member.
        let blob = std::fs::read(&out).unwrap();
        assert_eq!(first.size, blob.len() as u64);
        assert_eq!(
            first.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
        );
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(blob.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(
            first.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&tar_bytes)))
        );
        let mut names = Vec::new();
        let mut ar = ::tar::Archive::new(tar_bytes.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            if p.ends_with("ns/alpha/blob.bin") {
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                assert_eq!(body.len(), 3_000_000);
            }
            names.push(p);
        }
        let sp = "opt/py/lib/python3.11/site-packages";
        for want in [
            format!("{sp}/ns/"),
            format!("{sp}/ns/alpha/__init__.py"),
            format!("{sp}/ns/beta/__init__.py"),
            format!("{sp}/beta-1.0.dist-info/RECORD"),
            format!("{sp}/alpha-1.0.dist-info/INSTALLER"),
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(
            names.iter().filter(|n| n.ends_with("/ns/")).count(),
            1,
            "one ns/ entry"
        );

        // Again: every fragment from the cache, the same bytes.
        let again = fragments(&cache, &[a.clone(), b], &layout, &lost).unwrap();
        assert!(again.iter().all(|f| !f.built));
        let second = layer_of(&again, &scheme, &d.path().join("again.tgz"));
        assert_eq!(
            (second.digest, second.diff_id),
            (first.digest, first.diff_id)
        );

        // Another set reuses what it shares; another layout builds anew.
        let mixed = fragments(&cache, &[a.clone(), c], &layout, &lost).unwrap();
        assert_eq!(
            mixed.iter().map(|f| f.built).collect::<Vec<_>>(),
            [false, true]
        );
        let other = Layout {
            owner: (0, 0),
            ..layout.clone()
        };
        assert!(fragments(&cache, &[a], &other, &lost[..1]).unwrap()[0].built);
    }

    /// Issue 14 #1: two distributions shipping one file are installed as pip does (no
    /// dependency between them: by name, so beta's file replaces alpha's), whichever layers they
    /// land in: alpha's fragment leaves the file out and its RECORD drops the row when the bytes
    /// differ, and keeps it when they are identical.
    #[test]
    fn files_two_distributions_ship_are_kept_from_the_later_one() {
        let d = tempfile::tempdir().unwrap();
        let a = wheel(
            d.path(),
            "alpha",
            &[("same.py", b"1".to_vec()), ("twin.py", b"t".to_vec())],
        );
        let b = wheel(
            d.path(),
            "beta",
            &[("same.py", b"2".to_vec()), ("twin.py", b"t".to_vec())],
        );
        let scheme = Scheme::for_python(
            "/usr/bin/python3",
            "3.11",
            "/usr/lib/python3.11/site-packages",
        );
        let layout = Layout {
            scheme: &scheme,
            owner: (0, 0),
            mtime: 0,
            level: 1,
            zstd: None,
            bytecode: None,
        };
        let (lost, overlaps) = overlaps(&[a.clone(), b.clone()], &layout).unwrap();
        let frags = fragments(&d.path().join("f"), &[a, b], &layout, &lost).unwrap();
        let sp = "usr/lib/python3.11/site-packages";
        let mut o: Vec<String> = overlaps
            .iter()
            .map(|o| format!("{} {}>{} {}", o.path, o.replaced, o.by, o.identical))
            .collect();
        o.sort();
        assert_eq!(
            o,
            [
                format!("{sp}/same.py alpha>beta false"),
                format!("{sp}/twin.py alpha>beta true")
            ]
        );
        let (alpha, beta) = (&frags[0], &frags[1]);
        assert!(!alpha.paths.contains(&format!("{sp}/same.py")));
        assert!(!alpha.paths.contains(&format!("{sp}/twin.py")));
        assert!(beta.paths.contains(&format!("{sp}/same.py")));
        assert_ne!(alpha.key, beta.key);
        // Each layer of one of them alone: alpha's RECORD no longer lists same.py (beta's
        // bytes differ) but still lists twin.py (identical, and present).
        let out = d.path().join("alpha.tgz");
        layer_of(std::slice::from_ref(alpha), &scheme, &out);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut record = String::new();
        let mut ar = ::tar::Archive::new(tar_bytes.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            assert!(!p.ends_with("same.py"), "{p}");
            if p.ends_with("alpha-1.0.dist-info/RECORD") {
                e.read_to_string(&mut record).unwrap();
            }
        }
        assert!(
            !record.contains("same.py") && record.contains("twin.py,sha256="),
            "{record}"
        );
        // Without beta, alpha's fragment is the whole wheel again, under another key.
        let alone = wheel(
            d.path(),
            "alpha",
            &[("same.py", b"1".to_vec()), ("twin.py", b"t".to_vec())],
        );
        let (lost, _) = super::overlaps(std::slice::from_ref(&alone), &layout).unwrap();
        let again = fragments(&d.path().join("f"), &[alone], &layout, &lost).unwrap();
        assert!(again[0].paths.contains(&format!("{sp}/same.py")) && again[0].key != alpha.key);
    }

    /// Issue 14 #4: with a compiler, a fragment carries a checked-hash .pyc per module and its
    /// RECORD lists them; the key differs from the fragment without bytecode.
    #[test]
    fn fragments_carry_bytecode_listed_in_record() {
        let version = std::process::Command::new("python3")
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let Ok(compiler) = super::super::bytecode::Compiler::find(&version) else {
            assert!(std::env::var_os("CI").is_none(), "CI machines have python3");
            return;
        };
        let d = tempfile::tempdir().unwrap();
        let w = wheel(
            d.path(),
            "alpha",
            &[
                ("alpha/__init__.py", b"from .core import X\n".to_vec()),
                ("alpha/core.py", b"X = 1\n".to_vec()),
                ("alpha/data.txt", b"not code".to_vec()),
            ],
        );
        let scheme = Scheme::for_python(
            "/usr/bin/python3",
            &version,
            &format!("/usr/lib/python{version}/site-packages"),
        );
        let plain = Layout {
            scheme: &scheme,
            owner: (0, 0),
            mtime: 0,
            level: 1,
            zstd: None,
            bytecode: None,
        };
        let compiled = Layout {
            bytecode: Some(&compiler),
            ..plain.clone()
        };
        let none = vec![Lost::new()];
        let f0 =
            &fragments(&d.path().join("f"), std::slice::from_ref(&w), &plain, &none).unwrap()[0];
        let f1 = &fragments(
            &d.path().join("f"),
            std::slice::from_ref(&w),
            &compiled,
            &none,
        )
        .unwrap()[0];
        assert_ne!(f0.key, f1.key);
        let sp = format!("usr/lib/python{version}/site-packages");
        let pycs: Vec<&String> = f1.paths.iter().filter(|p| p.ends_with(".pyc")).collect();
        assert_eq!(
            pycs,
            [
                &format!("{sp}/alpha/__pycache__/__init__.{}.pyc", compiler.cache_tag),
                &format!("{sp}/alpha/__pycache__/core.{}.pyc", compiler.cache_tag)
            ]
        );
        let out = d.path().join("l.tgz");
        layer_of(std::slice::from_ref(f1), &scheme, &out);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut record = String::new();
        let mut ar = ::tar::Archive::new(tar_bytes.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy().ends_with("RECORD") {
                e.read_to_string(&mut record).unwrap();
            }
        }
        assert!(
            record.contains(&format!(
                "alpha/__pycache__/core.{}.pyc,sha256=",
                compiler.cache_tag
            )),
            "{record}"
        );
    }
}
