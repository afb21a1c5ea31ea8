//! The module graph points one way: `src/lib.rs`'s dependency rule, held to the code.
//!
//! The rule is the table under `# Dependency rule` in `src/lib.rs`: a module may use modules of
//! lower layers only. This test reads that table, then every `crate::` path in `src/` (outside
//! comments and unit tests), and names each use that breaks it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::repo;

/// The layer of each module, read from `src/lib.rs`.
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).unwrap();
    let table = lib.split("# Dependency rule").nth(1).expect("src/lib.rs has a dependency rule");
    let mut layers = BTreeMap::new();
    for line in table.lines().map(|l| l.trim_start_matches("//!").trim()) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, layer, modules, _] = cells.as_slice() else { continue };
        let Ok(layer) = layer.parse::<usize>() else { continue };
        for module in modules.split(',') {
            layers.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    layers
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a file's code (not its comments, not its unit tests) names as `crate::<module>`.
fn uses(text: &str) -> Vec<(usize, String)> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        for (at, _) in line.match_indices("crate::") {
            let name: String =
                line[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::store_conformance!` and the like are macros, not modules.
            if !line[at + "crate::".len() + name.len()..].starts_with('!') {
                found.push((n + 1, name));
            }
        }
    }
    found
}

/// Found in review: two import cycles tied configuration, policy, schema, TLS, auth, the store,
/// the audit trail and the gateway together.
#[test]
fn the_module_graph_points_one_way() {
    let layers = layers();
    assert!(layers.len() > 20, "the table lists the modules: {layers:?}");
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    let mut unlisted = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.iter().next().unwrap().to_str().unwrap().trim_end_matches(".rs").to_owned();
        if first == "lib" || first == "main" {
            continue;
        }
        let Some(&own) = layers.get(&first) else {
            unlisted.push(first);
            continue;
        };
        for (line, used) in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == first {
                continue;
            }
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => broken.push(format!(
                    "{}:{line}: `{first}` (layer {own}) uses `{used}` (layer {layer})",
                    relative.display()
                )),
                None => unlisted.push(used),
            }
        }
    }
    unlisted.sort();
    unlisted.dedup();
    assert!(unlisted.is_empty(), "modules missing from src/lib.rs's dependency rule: {unlisted:?}");
    assert!(broken.is_empty(), "uses that break src/lib.rs's dependency rule:\n{}", broken.join("\n"));
}

/// The sibling modules a child of `parent` names: `super::<name>` (alone, in a path or in a
/// `use super::{…}` group) and `crate::<parent>::<name>`, in its code (not its comments, not
/// its unit tests). Names that are not siblings (the parent's own items) are left to the caller.
fn sibling_uses(text: &str, parent: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut found = Vec::new();
    let crate_prefix = format!("crate::{parent}::");
    for prefix in ["super::", crate_prefix.as_str()] {
        for (at, _) in code.match_indices(prefix) {
            let rest = code[at + prefix.len()..].trim_start();
            if let Some(group) = rest.strip_prefix('{') {
                // The first name of each item at the group's own depth (`{a::{x, y}, b}`: a, b).
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            found.push(ident(&group[i..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                found.push(ident(rest));
            }
        }
    }
    found
}

/// Found in review: inside `http/`, `partner` and `openapi` used each other, and `requests` used
/// `partner`, which used it. Within each directory of `src/`, the modules that sit side by side
/// use each other in one direction only: their graph has no cycle.
#[test]
fn sibling_modules_do_not_use_each_other_in_a_circle() {
    let src = repo().join("src");
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let parent = dir.file_name().unwrap().to_str().unwrap().to_owned();
        // Each child module: `<name>.rs`, or `<name>/mod.rs`.
        let mut children: BTreeMap<String, String> = BTreeMap::new();
        for child in std::fs::read_dir(&dir).unwrap() {
            let path = child.unwrap().path();
            let (name, file) = if path.is_dir() {
                (path.file_name().unwrap().to_str().unwrap().to_owned(), path.join("mod.rs"))
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("mod.rs") {
                (path.file_stem().unwrap().to_str().unwrap().to_owned(), path.clone())
            } else {
                continue;
            };
            if let Ok(text) = std::fs::read_to_string(&file) {
                children.insert(name, text);
            }
        }
        let edges: BTreeMap<&str, Vec<String>> = children
            .iter()
            .map(|(name, text)| {
                let mut used: Vec<String> =
                    sibling_uses(text, &parent).into_iter().filter(|u| u != name && children.contains_key(u)).collect();
                used.sort();
                used.dedup();
                (name.as_str(), used)
            })
            .collect();
        // Depth-first search; a module met again while still on the path closes a cycle.
        fn visit<'a>(
            node: &'a str,
            edges: &'a BTreeMap<&'a str, Vec<String>>,
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
            cycles: &mut Vec<String>,
            parent: &str,
        ) {
            if done.contains(&node) {
                return;
            }
            if let Some(start) = path.iter().position(|n| *n == node) {
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(node);
                cycles.push(format!("{parent}/: {}", cycle.join(" -> ")));
                return;
            }
            path.push(node);
            for next in edges.get(node).into_iter().flatten() {
                visit(next, edges, path, done, cycles, parent);
            }
            path.pop();
            done.push(node);
        }
        let mut done = Vec::new();
        for node in edges.keys() {
            visit(node, &edges, &mut Vec::new(), &mut done, &mut cycles, &parent);
        }
    }
    assert!(cycles.is_empty(), "modules that use each other in a circle:\n{}", cycles.join("\n"));
}
