//! The house rule "no module cycles" (issue 12), checked on the sources of
//! every crate in the workspace: no module file reaches back to itself
//! through the modules it imports, and no top-level module (a file or a
//! folder of `src/`) imports one that imports it back.
//!
//! Why: a reader holds a module in mind by what it stands on; in a cycle
//! neither side can be read first, and the runtime state in particular
//! must sit below everything that reads it (state ← {pipeline, admin,
//! websocket} ← server).
//!
//! The check reads paths, not types (no parser of Rust is in the tree,
//! and this needs none): every `crate::…` and `super::…` path outside
//! comments and outside the trailing `#[cfg(test)]` module (tests may
//! reach anywhere), resolved to the deepest module file it names. Files
//! named `tests.rs` are test modules and are skipped. A parent's own
//! relative paths to its children (`mod x;` then `x::f()`) are parent →
//! child edges and are not followed, which can only miss a cycle through
//! a `mod.rs`, never invent one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`stage/forward`, `` for lib.rs) → its source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let module = match rel.as_str() {
                "lib" | "main" => String::new(),
                r => r.strip_suffix("/mod").unwrap_or(r).to_string(),
            };
            if module.rsplit('/').next() == Some("tests") {
                continue;
            }
            out.insert(module, p);
        }
    }
    out
}

/// The text a module imports with: no comments, no trailing test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `a, b::{c, d}, e as f` at its top-level commas.
fn split_top(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, ch) in list.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// Every path a `use` tree names, each as its segments.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    for item in split_top(tree) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if let Some(open) = item.find('{') {
            let mut p = prefix.to_vec();
            p.extend(segments(&item[..open]));
            let inner = &item[open + 1..item.rfind('}').unwrap()];
            expand(&p, inner, out);
        } else {
            let mut p = prefix.to_vec();
            p.extend(segments(item.split(" as ").next().unwrap()));
            out.push(p);
        }
    }
}

fn segments(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "self")
        .map(String::from)
}

/// `super::…` from `module` (a `mod.rs` module's parent is its folder's parent).
fn rooted(module: &str, head: &str, rest: Vec<String>) -> Vec<String> {
    if head == "crate" {
        return rest;
    }
    let mut base: Vec<String> = module
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    base.pop();
    let mut rest = rest.into_iter().peekable();
    while rest.peek().is_some_and(|s| s == "super") {
        rest.next();
        base.pop();
    }
    base.extend(rest);
    base
}

/// Module → the other modules of its crate it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let resolve = |segs: &[String]| -> Option<String> {
        (1..=segs.len())
            .rev()
            .map(|k| segs[..k].join("/"))
            .find(|m| mods.contains_key(m))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &mods {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let mut paths = Vec::new();
        // `use crate::{…};` / `use super::{…};`
        let mut rest = text.as_str();
        while let Some(i) = rest.find("use ") {
            rest = &rest[i + 4..];
            let Some(end) = rest.find(';') else { break };
            let stmt = rest[..end].trim();
            for head in ["crate", "super"] {
                if let Some(tree) = stmt.strip_prefix(head).and_then(|s| s.strip_prefix("::")) {
                    let mut found = Vec::new();
                    expand(&[], tree, &mut found);
                    paths.extend(found.into_iter().map(|p| rooted(module, head, p)));
                }
            }
        }
        // Inline `crate::a::b` / `super::a` anywhere.
        for head in ["crate::", "super::"] {
            let mut at = 0;
            while let Some(i) = text[at..].find(head) {
                let start = at + i;
                at = start + head.len();
                let before = text[..start].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let tail: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let segs: Vec<String> = segments(&tail).collect();
                paths.push(rooted(module, head.trim_end_matches(':'), segs));
            }
        }
        for p in paths {
            if let Some(target) = resolve(&p)
                && !target.is_empty()
                && &target != module
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// The groups of nodes that reach each other (Tarjan), larger than one.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                if !t.index.contains_key(w.as_str()) {
                    visit(t, w);
                    let l = t.low[w.as_str()].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w.as_str()) {
                    let l = t.index[w.as_str()].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The same graph between top-level modules (`stage/forward` → `stage`).
fn folders(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split('/').next().unwrap().to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in edges {
        for to in tos {
            if top(from) != top(to) {
                out.entry(top(from)).or_default().insert(top(to));
            }
        }
    }
    out
}

fn crates() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.join("src"),
            )
        })
        .collect();
    out.sort();
    out
}

fn describe(edges: &BTreeMap<String, BTreeSet<String>>, group: &[String]) -> String {
    group
        .iter()
        .map(|m| {
            let inside: Vec<_> = edges[m].iter().filter(|t| group.contains(t)).collect();
            format!("{m} → {inside:?}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn no_crate_has_a_module_cycle() {
    let all = crates();
    assert!(all.len() >= 10, "found only {all:?} under crates/");
    let mut found = Vec::new();
    for (name, src) in &all {
        let files = graph(src);
        for g in cycles(&files) {
            found.push(format!("{name}, files: {}", describe(&files, &g)));
        }
        let tops = folders(&files);
        for g in cycles(&tops) {
            found.push(format!(
                "{name}, top-level modules: {}",
                describe(&tops, &g)
            ));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// The check itself: a cycle written on purpose is found, through a
/// `use` group, an inline path and `super::`, at both levels.
#[test]
fn a_cycle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("stage")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod state;\nmod stage;\n").unwrap();
    std::fs::write(
        src.join("state.rs"),
        "// use crate::stage::x; (a comment: not an edge)\nuse crate::{config, stage::site::Matcher};\n",
    )
    .unwrap();
    std::fs::write(src.join("config.rs"), "pub struct C;\n").unwrap();
    std::fs::write(
        src.join("stage/mod.rs"),
        "pub mod site;\npub mod forward;\n",
    )
    .unwrap();
    std::fs::write(src.join("stage/site.rs"), "pub struct Matcher;\n").unwrap();
    std::fs::write(
        src.join("stage/forward.rs"),
        "fn f(s: &crate::state::Shared) { super::site::g() }\n#[cfg(test)]\nmod tests { use crate::config::C; }\n",
    )
    .unwrap();
    let files = graph(src);
    assert_eq!(
        files["state"],
        BTreeSet::from(["config".to_string(), "stage/site".to_string()])
    );
    assert_eq!(
        files["stage/forward"],
        BTreeSet::from(["state".to_string(), "stage/site".to_string()])
    );
    assert!(cycles(&files).is_empty(), "no file-level cycle: {files:?}");
    assert_eq!(
        cycles(&folders(&files)),
        vec![vec!["stage".to_string(), "state".to_string()]]
    );
    std::fs::write(src.join("stage/site.rs"), "use super::forward::f;\n").unwrap();
    std::fs::write(src.join("config.rs"), "use crate::state::S;\n").unwrap();
    let files = graph(src);
    assert_eq!(
        cycles(&files),
        vec![vec![
            "config".to_string(),
            "stage/forward".into(),
            "stage/site".into(),
            "state".into()
        ]],
        "{files:?}"
    );
}
