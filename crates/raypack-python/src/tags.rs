//! The ordered list of wheel tags a target interpreter accepts, computed the way
//! `packaging.tags` (26.3) does for CPython on glibc Linux: `cpython_tags` then
//! `compatible_tags`, with platforms `linux_<arch>` first, then manylinux from the target's
//! glibc down (with the legacy manylinux1/2010/2014 aliases in place).

use std::collections::HashMap;

use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

/// A target: CPython `3.minor` on glibc `2.glibc_minor`, `arch` (`x86_64` or `aarch64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// CPython 3.X: X.
    pub python_minor: u32,
    /// glibc 2.N: N.
    pub glibc_minor: u32,
    /// `x86_64` or `aarch64`.
    pub arch: String,
}

impl Target {
    /// From an image platform (`linux/amd64`), a Python version (`3.11`) and a manylinux level
    /// (`2_36`).
    pub fn new(platform: &str, python_version: &str, manylinux: &str) -> Option<Target> {
        let arch = match platform {
            "linux/amd64" => "x86_64",
            "linux/arm64" | "linux/arm64/v8" => "aarch64",
            _ => return None,
        };
        let minor = python_version
            .strip_prefix("3.")?
            .split('.')
            .next()?
            .parse()
            .ok()?;
        let glibc = manylinux.strip_prefix("2_")?.parse().ok()?;
        Some(Target {
            python_minor: minor,
            glibc_minor: glibc,
            arch: arch.into(),
        })
    }

    /// Platform tags, most specific first.
    pub fn platforms(&self) -> Vec<String> {
        let arch = &self.arch;
        let mut out = vec![format!("linux_{arch}")];
        let oldest = if arch == "x86_64" || arch == "i686" {
            5
        } else {
            17
        };
        for minor in (oldest..=self.glibc_minor).rev() {
            out.push(format!("manylinux_2_{minor}_{arch}"));
            match minor {
                17 => out.push(format!("manylinux2014_{arch}")),
                12 => out.push(format!("manylinux2010_{arch}")),
                5 => out.push(format!("manylinux1_{arch}")),
                _ => {}
            }
        }
        out
    }

    /// Every compatible `py-abi-plat` tag, best first.
    pub fn tags(&self) -> Vec<String> {
        let m = self.python_minor;
        let cp = format!("cp3{m}");
        let plats = self.platforms();
        let mut out = Vec::new();
        for abi in [cp.as_str(), "abi3", "none"] {
            for p in &plats {
                out.push(format!("{cp}-{abi}-{p}"));
            }
        }
        for v in (2..m).rev() {
            for p in &plats {
                out.push(format!("cp3{v}-abi3-{p}"));
            }
        }
        let mut py = vec![format!("py3{m}"), "py3".to_string()];
        py.extend((0..m).rev().map(|v| format!("py3{v}")));
        for i in &py {
            for p in &plats {
                out.push(format!("{i}-none-{p}"));
            }
        }
        out.push(format!("{cp}-none-any"));
        for i in &py {
            out.push(format!("{i}-none-any"));
        }
        out
    }

    /// Tag → priority (0 is best).
    pub fn priorities(&self) -> HashMap<String, usize> {
        self.tags()
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPython 3.{} manylinux_2_{} {}",
            self.python_minor, self.glibc_minor, self.arch
        )
    }
}
/// The marker environment of a CPython target on Linux.
pub fn marker_env(t: &Target) -> MarkerEnvironment {
    let pv = format!("3.{}", t.python_minor);
    let full = format!("3.{}.0", t.python_minor);
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: &full,
        os_name: "posix",
        platform_machine: &t.arch,
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: &full,
        python_version: &pv,
        sys_platform: "linux",
    })
    .expect("valid marker environment")
}
