//! Checks the daemon's module structure from its sources: no top-level module imports one that
//! imports it back (a pair that does cannot be understood or changed one at a time). An edge is
//! any `crate::name` path, in a `use` or inline, outside the file's unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each top-level module names through `crate::`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let deps = edges.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    // `use crate::{a, b::C}`: every first segment in the group.
                    Some(group) => group
                        .split([',', '}'])
                        .map(|n| n.trim().split("::").next().unwrap_or(""))
                        .collect(),
                    None => vec![
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap_or(""),
                    ],
                };
                for name in names {
                    if !name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase()) {
                        deps.insert(name.to_string());
                    }
                }
            }
        }
        deps.remove(&top);
    }
    edges
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(edges.contains_key("daemon") && edges.contains_key("resident"));
    let mut mutual = Vec::new();
    for (a, deps) in &edges {
        for b in deps {
            if a < b && edges.get(b).is_some_and(|back| back.contains(a)) {
                mutual.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        mutual.is_empty(),
        "modules importing each other: {mutual:?}"
    );
}
