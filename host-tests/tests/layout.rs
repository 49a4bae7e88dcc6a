//! The harness's own module graph, read from the `use` paths in `src/`: no module imports one
//! that imports it back, and only the linker (`plugin`) and the re-exports (`lib`) reach into
//! `hostcalls/`, so hostcalls depend on state and data, never the reverse.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, as a path from the crate root (`lib.rs` is `crate`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".to_string()
    } else {
        format!("crate::{}", parts.join("::"))
    }
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("crate", |(p, _)| p)
}

/// The identifiers of a path, from its start up to the first `{`, `*` or non-path character.
fn segments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return out;
        }
        out.push(&rest[..len]);
        match rest[len..].strip_prefix("::") {
            Some(next) => rest = next,
            None => return out,
        }
    }
}

/// The deepest module `base::path[0]::path[1]...` names.
fn deepest(modules: &BTreeSet<String>, base: &str, path: &[&str]) -> Option<String> {
    let mut deepest = None;
    let mut current = base.to_string();
    for segment in path {
        current = format!("{current}::{segment}");
        if !modules.contains(&current) {
            break;
        }
        deepest = Some(current.clone());
    }
    deepest
}

/// The modules a file names in its paths: `crate::a::b`, `super::x`, `self::x`, and, in a
/// `use` line, a child module by its bare name (`use builder::GatewayBuilder`). Each path counts
/// as an import of the deepest module it names. `mod x;` declares, it does not import.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Unit tests close a file and import its own items through `super`: not part of the graph.
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let before = line[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path = segments(&line[at + "crate::".len()..]);
            if path.is_empty() {
                // `crate::{...}`: the root's re-exports.
                found.insert("crate".to_string());
            } else {
                let named = format!("crate::{}", path[0]);
                if modules.contains(&named) {
                    found.extend(deepest(modules, "crate", &path));
                } else {
                    found.insert("crate".to_string());
                }
            }
        }
        for (keyword, base) in [("super::", parent(module)), ("self::", module)] {
            for (at, _) in line.match_indices(keyword) {
                let before = line[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path = segments(&line[at + keyword.len()..]);
                let named = path.first().map(|p| format!("{base}::{p}"));
                if named.is_some_and(|n| modules.contains(&n)) {
                    found.extend(deepest(modules, base, &path));
                } else if base != module {
                    found.insert(base.to_string());
                }
            }
        }
        if let Some(rest) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("pub(crate) use "))
            .or_else(|| line.strip_prefix("use "))
        {
            let path = segments(rest);
            if path
                .first()
                .is_some_and(|p| modules.contains(&format!("{module}::{p}")))
            {
                found.extend(deepest(modules, module, &path));
            }
        }
    }
    found.remove(module);
    found
}

/// Module -> the modules it imports, for every file of `src/`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    files
        .iter()
        .map(|file| {
            let module = module_of(&src, file);
            let text = std::fs::read_to_string(file).unwrap();
            let edges = imports(&module, &text, &modules);
            (module, edges)
        })
        .collect()
}

/// A path `from` ->...-> `to`, if there is one.
fn path(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in graph.get(from).into_iter().flatten() {
        if next == to {
            return Some(vec![from.to_string(), to.to_string()]);
        }
        if let Some(mut rest) = path(graph, next, to, seen) {
            rest.insert(0, from.to_string());
            return Some(rest);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(graph.len() > 20, "read too few modules: {graph:?}");
    assert!(
        graph["crate::hostcalls::callouts"].contains("crate::state"),
        "the reader misses imports: {:?}",
        graph["crate::hostcalls::callouts"]
    );
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, edges)| edges.iter().map(move |to| (module, to)))
        .filter_map(|(module, to)| {
            let back = path(&graph, to, module, &mut BTreeSet::new())?;
            Some(format!("{module} -> {}", back.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_linker_and_the_reexports_import_hostcalls() {
    let outside: Vec<String> = graph()
        .iter()
        .filter(|(module, _)| !module.starts_with("crate::hostcalls"))
        .filter(|(module, _)| !["crate", "crate::plugin"].contains(&module.as_str()))
        .flat_map(|(module, edges)| {
            edges
                .iter()
                .filter(|to| to.starts_with("crate::hostcalls"))
                .map(move |to| format!("{module} -> {to}"))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "hostcalls are imported by state or data modules:\n{}",
        outside.join("\n")
    );
}
