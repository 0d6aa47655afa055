//! Property-based fuzzing of every parser that reads input raypack does not control: requirement files, wheel filenames, RECORD, METADATA, the zip central-directory
//! reader, base-image layers (tar with whiteouts), PEP 503 index pages, and wheel
//! installation. Each property holds for every input: no panic, no unbounded allocation,
//! and the invariants the rest of the pipeline relies on.
//!
//! `cargo test fuzz_` runs them briefly (proptest's 256 cases each, part of the suite);
//! `PROPTEST_CASES=20000 cargo test --release fuzz_` is the long run. A failing input is
//! shrunk and printed; proptest records it under `proptest-regressions/` for replay.

use proptest::prelude::*;
use std::io::Write;

/// Text built from the characters these formats are made of, so that mutations hit the
/// parsers' interesting paths far more often than uniform Unicode would.
fn structured_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\n".to_string()),
            Just("[project]\nname = \"demo\"\n".to_string()),
            Just("[code]\nworking_dir = \".\"\n".to_string()),
            Just("[dependencies]\nrequirements = [\"requests>=2\"]\n".to_string()),
            Just("-r other.txt".to_string()),
            Just("-c c.txt".to_string()),
            Just("--hash=sha256:".to_string()),
            Just(" \\\n".to_string()),
            Just(" # ".to_string()),
            Just("==".to_string()),
            Just("@ https://x/y.whl".to_string()),
            Just("; python_version < \"3.12\"".to_string()),
            Just("[extra]".to_string()),
            "[ -~]{0,12}",
            any::<String>(),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..4096)
}

/// A zip built from `(name, body)` members (names as generated: `..`, absolute paths,
/// control characters, duplicates and file/directory clashes included).
fn zip_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in members {
        if z.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .is_ok()
        {
            let _ = z.write_all(body);
        }
    }
    z.finish().map(|c| c.into_inner()).unwrap_or_default()
}

fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("demo-1.0.dist-info/METADATA".to_string()),
        Just("demo-1.0.dist-info/WHEEL".to_string()),
        Just("demo-1.0.dist-info/RECORD".to_string()),
        Just("demo-1.0.dist-info/entry_points.txt".to_string()),
        Just("demo-1.0.data/scripts/run".to_string()),
        Just("demo/__init__.py".to_string()),
        Just("demo".to_string()),
        Just("../escape.py".to_string()),
        "[a-z./\\\\\n\r-]{1,20}",
    ]
}

fn member_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n".to_vec()),
        Just(b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec()),
        Just(b"[console_scripts]\nrun = demo:main\n../x = demo:main\n".to_vec()),
        Just(b"#!python\nprint(1)\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #[test]
    fn fuzz_requirement_files(top in structured_text(), other in structured_text()) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("requirements.txt"), &top).unwrap();
        std::fs::write(d.path().join("other.txt"), &other).unwrap();
        std::fs::write(d.path().join("c.txt"), "x<2\n").unwrap();
        if let Ok(r) = crate::requirements_txt::read(&d.path().join("requirements.txt")) {
            // Whatever is accepted is a PEP 508 requirement with sha256 hex hashes.
            for l in r.requirements.iter().chain(&r.constraints) {
                prop_assert!(
                    crate::requirement::parse(&l.spec).is_ok(),
                    "{:?}", l
                );
                prop_assert!(l.hashes.iter().all(|h| h.len() == 64));
            }
        }
    }

    #[test]
    fn fuzz_wheel_filenames(name in prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_.]{1,8}-[0-9.]{1,6}(-[0-9a-z]{1,3})?-(py3|cp311)(\\.py2)?-(none|abi3|cp311)-(any|manylinux_2_17_x86_64(\\.manylinux2014_x86_64)?|linux_[a-z0-9_]{1,9})\\.whl",
    ]) {
        if let Some(w) = crate::wheel::WheelName::parse(&name) {
            prop_assert!(!w.name.is_empty() && !w.tags.is_empty(), "{name:?} → {w:?}");
        }
    }

    #[test]
    fn fuzz_record_csv_round_trips(a in any::<String>(), b in "[ -~]{0,20}", size in any::<u32>()) {
        let line = format!(
            "{},{},{size}",
            crate::wheel::csv_field(&a),
            crate::wheel::csv_field(&b)
        );
        let fields = crate::wheel::csv_fields(&line);
        prop_assert_eq!(fields, vec![a, b, size.to_string()]);
    }

    #[test]
    fn fuzz_metadata(text in structured_text()) {
        let m = crate::metadata::parse(&text);
        prop_assert!(m.requires_dist.len() <= text.lines().count());
    }

    #[test]
    fn fuzz_zip_central_directory(bytes in arbitrary_bytes(), members in prop::collection::vec((member_name(), member_body()), 0..6)) {
        use crate::metadata::{Eocd, find_metadata_entry, local_member, metadata_from_zip};
        let real = zip_of(&members);
        for b in [&bytes, &real] {
            let _ = Eocd::find(b);
            if let Some(e) = find_metadata_entry(b) {
                let _ = local_member(b, &e);
            }
            let _ = metadata_from_zip(b);
        }
        // The same reader over a real zip: the central directory it finds is the real one.
        if let Some(eocd) = Eocd::find(&real) {
            prop_assert!(eocd.cd_offset + eocd.cd_size <= real.len() as u64);
        }
    }

    #[test]
    fn fuzz_base_layers_with_whiteouts(
        entries in prop::collection::vec((prop_oneof![
            Just("usr/lib/python3.11/site-packages/demo-1.0.dist-info/METADATA".to_string()),
            Just("usr/lib/python3.11/site-packages/demo-1.0.dist-info/RECORD".to_string()),
            Just("usr/lib/python3.11/site-packages/.wh.demo-1.0.dist-info".to_string()),
            Just("usr/lib/python3.11/site-packages/.wh..wh..opq".to_string()),
            Just("usr/lib/python3.11/site-packages/x-2.dist-info/METADATA".to_string()),
            "[a-z./-]{1,40}",
        ], member_body()), 0..8),
        raw in arbitrary_bytes(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("layer.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&layer).unwrap());
        for (path, body) in &entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            if h.set_path(path).is_ok() {
                h.set_cksum();
                let _ = b.append(&h, body.as_slice());
            }
        }
        b.finish().unwrap();
        drop(b);
        let raw_layer = d.path().join("raw.tar");
        std::fs::write(&raw_layer, &raw).unwrap();
        let sp = "usr/lib/python3.11/site-packages";
        if let Ok(idx) = crate::installed::BaseIndex::build(std::slice::from_ref(&layer), sp) {
            // A whiteout of a dist-info (or an opaque marker) after it leaves nothing of it.
            let last_whiteout = entries.iter().rposition(|(p, _)| {
                p == &format!("{sp}/.wh.demo-1.0.dist-info") || p == &format!("{sp}/.wh..wh..opq")
            });
            let last_demo = entries.iter().rposition(|(p, _)| p.contains("demo-1.0.dist-info/METADATA"));
            if let (Some(w), Some(m)) = (last_whiteout, last_demo) && w > m {
                prop_assert!(
                    !idx.dists.values().any(|d| d.dist_info.ends_with("/demo-1.0.dist-info")),
                    "{entries:?}"
                );
            }
        }
        let _ = crate::installed::BaseIndex::build(&[raw_layer, layer], sp);
    }

    #[test]
    fn fuzz_index_html(body in prop_oneof![
        any::<String>(),
        prop::collection::vec(prop_oneof![
            Just("<a href=\"".to_string()),
            Just("\">".to_string()),
            Just("</a>".to_string()),
            Just("#sha256=".to_string()),
            Just(" data-yanked=\"".to_string()),
            Just(" data-requires-python=\"&gt;=3.8\"".to_string()),
            Just("&amp;&#x3c;&#60;&".to_string()),
            "[ -~]{0,16}",
        ], 0..20).prop_map(|p| p.concat()),
    ]) {
        let base = url::Url::parse("https://index.example/simple/demo/").unwrap();
        for a in crate::html::anchors(&base, &body) {
            prop_assert!(url::Url::parse(&a.url).is_ok(), "{a:?}");
        }
        let _ = crate::html::unescape(&body);
    }

    #[test]
    fn fuzz_wheel_install(members in prop::collection::vec((member_name(), member_body()), 0..8)) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("demo-1.0-py3-none-any.whl");
        std::fs::write(&path, zip_of(&members)).unwrap();
        let scheme = crate::target_scheme("/usr/bin/python3", "3.11");
        if let Ok(inst) = crate::wheel::install(
            &path, "demo-1.0-py3-none-any.whl", &scheme, (0, 0), true, &d.path().join("u"),
        ) {
            let home = crate::TARGET_HOME.trim_start_matches('/');
            for e in &inst.entries {
                prop_assert!(e.path.starts_with(home), "{} outside {home}", e.path);
                prop_assert!(
                    !e.path.split('/').any(|c| c == ".." || c == ".") && !e.path.chars().any(char::is_control),
                    "{:?}", e.path
                );
            }
        }
    }
}
