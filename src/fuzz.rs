//! Property-based fuzzing of the app's parsers of input raypack does not control: the recipe
//! and users' KubeRay YAML for `--resolve` (the packaging parsers are fuzzed in
//! `raypack-python`). Each property holds for every input: no panic, and the invariants the
//! rest of the pipeline relies on.
//!
//! `cargo test fuzz_` runs them briefly (proptest's 256 cases each, part of the suite);
//! `PROPTEST_CASES=20000 cargo test --release fuzz_` is the long run.

use proptest::prelude::*;

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

proptest! {
    #[test]
    fn fuzz_recipe_parser(text in structured_text()) {
        let d = tempfile::tempdir().unwrap();
        let _ = crate::recipe::Recipe::from_text(&d.path().join("raypack.toml"), &text);
        let _ = crate::recipe::Recipe::from_text(&d.path().join("pyproject.toml"), &text);
    }

    /// `--resolve` on any text: no panic; whatever it accepts it rewrites into YAML that parses,
    /// and resolving its own output changes nothing more.
    #[test]
    fn fuzz_kuberay_resolve(parts in prop::collection::vec(prop_oneof![
        Just("kind: RayJob\n".to_string()),
        Just("kind: RayService\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  runtimeEnvYAML: |\n    pip: [x]\n".to_string()),
        Just("  serveConfigV2: |\n    applications:\n      - name: a\n".to_string()),
        Just("  entrypoint: python main.py # c\n".to_string()),
        Just("    rayVersion: '2.52.1'\n".to_string()),
        Just("        image: \"r.io/team/app:1\"\n".to_string()),
        Just("      - image: r.io/team/app\n".to_string()),
        Just("---\n".to_string()),
        Just("  - ".to_string()),
        Just("{a: [1, ".to_string()),
        "[ -~]{0,10}",
        any::<String>(),
    ], 0..14)) {
        let text = parts.concat();
        let baked = crate::spec::resolve::BakedImage {
            reference: "r.io/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ray_version: Some("2.60.0"),
        };
        let env = crate::spec::runtime_env::RuntimeEnv {
            working_dir: Some("s3://b/wd.zip".into()),
            ..Default::default()
        };
        if let Ok(r) = crate::spec::resolve::resolve_images(&text, "f.yaml", &baked) {
            let again = crate::spec::resolve::resolve_images(&r.text, "f.yaml", &baked);
            prop_assert!(again.is_ok(), "its own output: {:?}\n{}", again, r.text);
            prop_assert_eq!(&again.unwrap().text, &r.text);
        }
        if let Ok(r) = crate::spec::resolve::resolve_runtime_envs(&text, "f.yaml", &env) {
            let again = crate::spec::resolve::resolve_runtime_envs(&r.text, "f.yaml", &env);
            prop_assert!(again.is_ok(), "its own output: {:?}\n{}", again, r.text);
            prop_assert_eq!(&again.unwrap().text, &r.text);
        }
    }

}
