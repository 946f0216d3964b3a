//! A model of the crate's sources for the structure tests of `tests/layering.rs` (included there
//! with `#[path]`; no other test uses it).
//!
//! - [`lex`]: a Rust lexer that knows line and nested block comments, string literals (plain,
//!   raw `r#"…"#`, byte and C strings), char literals and lifetimes, so that comments and
//!   strings never look like code and code is never hidden in a string.
//! - [`Crate`]: the files under `src/`, each with its module path (`src/a/b.rs` and
//!   `src/a/b/mod.rs` are `a::b`, `src/lib.rs` the root; `src/main.rs` is the binary crate and
//!   has none), its tokens with attributes and `#[cfg(test)]` items marked, and whether the
//!   whole file is test code (under a `tests` directory, or declared by `#[cfg(test)] mod x;`).
//! - [`Crate::graph`]: the file -> file graph of `use` declarations and qualified paths, and
//!   [`cycles`]: its strongly connected components.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword (`r#` stripped).
    Ident,
    /// A string literal of any kind; `text` is what stands between its quotes, escapes as written.
    Str,
    /// `::`.
    PathSep,
    /// Any other punctuation, one character.
    Punct,
    /// A char or byte literal.
    Char,
    /// A lifetime or loop label.
    Lifetime,
    /// A number literal.
    Num,
}

/// One token of a source file.
#[derive(Debug, Clone)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    /// 1-based line and column (in characters) of the token's first character.
    pub line: usize,
    pub col: usize,
    /// Inside an attribute (`#[…]` or `#![…]`), brackets included.
    pub attr: bool,
    /// Part of an item marked `#[cfg(test)]` (the attribute included).
    pub test: bool,
}

impl Token {
    pub fn is(&self, kind: Kind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }
    fn punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.len() == 1 && self.text.starts_with(c)
    }
    fn ident(&self, name: &str) -> bool {
        self.is(Kind::Ident, name)
    }
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The string literal starting at `i`, if one does: `(content start, content end, end)`.
fn string_at(c: &[char], i: usize) -> Option<(usize, usize, usize)> {
    let mut j = i;
    if matches!(c[j], 'b' | 'c') {
        j += 1;
    }
    if c.get(j) == Some(&'r') {
        let mut k = j + 1;
        while c.get(k) == Some(&'#') {
            k += 1;
        }
        if c.get(k) != Some(&'"') {
            return None;
        }
        let hashes = k - j - 1;
        let start = k + 1;
        let mut e = start;
        while e < c.len() {
            if c[e] == '"' && (1..=hashes).all(|h| c.get(e + h) == Some(&'#')) {
                return Some((start, e, e + 1 + hashes));
            }
            e += 1;
        }
        return Some((start, c.len(), c.len()));
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    let start = j + 1;
    let mut e = start;
    while e < c.len() {
        match c[e] {
            '\\' => e += 2,
            '"' => return Some((start, e, e + 1)),
            _ => e += 1,
        }
    }
    Some((start, c.len(), c.len()))
}

/// The char literal starting at `i` (a `'`), if it is one rather than a lifetime: its end.
fn char_at(c: &[char], i: usize) -> Option<usize> {
    if c.get(i + 1) == Some(&'\\') {
        let mut e = i + 3;
        while e < c.len() && c[e] != '\'' {
            e += 1;
        }
        return Some(e + 1);
    }
    (c.get(i + 2) == Some(&'\'')).then_some(i + 3)
}

/// The tokens of a Rust source text. Comments produce none.
pub fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < c.len() {
        let ch = c[i];
        let (tok_line, col) = (line, i - line_start + 1);
        let mut push = |kind, text: String| {
            out.push(Token { kind, text, line: tok_line, col, attr: false, test: false });
        };
        let end = if ch.is_whitespace() {
            i + 1
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            let mut e = i;
            while e < c.len() && c[e] != '\n' {
                e += 1;
            }
            e
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let (mut e, mut depth) = (i, 0);
            while e < c.len() {
                if c[e] == '/' && c.get(e + 1) == Some(&'*') {
                    depth += 1;
                    e += 2;
                } else if c[e] == '*' && c.get(e + 1) == Some(&'/') {
                    depth -= 1;
                    e += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    e += 1;
                }
            }
            e
        } else if let Some((s, e, end)) = string_at(&c, i) {
            push(Kind::Str, c[s..e].iter().collect());
            end
        } else if ch == 'b' && c.get(i + 1) == Some(&'\'') {
            let end = char_at(&c, i + 1).unwrap_or(i + 2);
            push(Kind::Char, c[i..end.min(c.len())].iter().collect());
            end
        } else if ch == '\'' {
            if let Some(end) = char_at(&c, i) {
                push(Kind::Char, c[i..end.min(c.len())].iter().collect());
                end
            } else {
                let mut e = i + 1;
                while e < c.len() && ident_char(c[e]) {
                    e += 1;
                }
                push(Kind::Lifetime, c[i..e].iter().collect());
                e
            }
        } else if ch == 'r' && c.get(i + 1) == Some(&'#') && c.get(i + 2).is_some_and(|&n| ident_start(n)) {
            let mut e = i + 2;
            while e < c.len() && ident_char(c[e]) {
                e += 1;
            }
            push(Kind::Ident, c[i + 2..e].iter().collect());
            e
        } else if ident_start(ch) {
            let mut e = i;
            while e < c.len() && ident_char(c[e]) {
                e += 1;
            }
            push(Kind::Ident, c[i..e].iter().collect());
            e
        } else if ch.is_ascii_digit() {
            let mut e = i;
            while e < c.len() && (ident_char(c[e]) || (c[e] == '.' && c.get(e + 1).is_some_and(char::is_ascii_digit))) {
                e += 1;
            }
            push(Kind::Num, c[i..e].iter().collect());
            e
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            push(Kind::PathSep, "::".to_string());
            i + 2
        } else {
            push(Kind::Punct, ch.to_string());
            i + 1
        };
        for (k, &x) in c.iter().enumerate().take(end.min(c.len())).skip(i) {
            if x == '\n' {
                line += 1;
                line_start = k + 1;
            }
        }
        i = end;
    }
    out
}

/// The index of the token closing the group opened at `open` (`(`, `[` or `{`), or the last one.
fn closing(t: &[Token], open: usize) -> usize {
    let (o, c) = match t[open].text.as_str() {
        "(" => ('(', ')'),
        "[" => ('[', ']'),
        _ => ('{', '}'),
    };
    let mut depth = 0;
    for (k, tok) in t.iter().enumerate().skip(open) {
        if tok.punct(o) {
            depth += 1;
        } else if tok.punct(c) {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    t.len() - 1
}

/// The index of the last token of the item starting at `start`: its `;` or its body's `}`.
fn item_end(t: &[Token], start: usize) -> usize {
    let mut k = start;
    while k < t.len() {
        if t[k].punct('(') || t[k].punct('[') {
            k = closing(t, k) + 1;
        } else if t[k].punct(';') {
            return k;
        } else if t[k].punct('{') {
            return closing(t, k);
        } else {
            k += 1;
        }
    }
    t.len() - 1
}

/// Marks attributes and `#[cfg(test)]` items. Returns whether an inner `#![cfg(test)]` makes
/// the whole file test code, and the names of the file modules declared `#[cfg(test)] mod x;`.
fn mark(t: &mut [Token]) -> (bool, Vec<String>) {
    let mut test_mods = Vec::new();
    let mut whole = false;
    let mut i = 0;
    while i + 1 < t.len() {
        let inner = t[i + 1].punct('!') && t.get(i + 2).is_some_and(|x| x.punct('['));
        if !(t[i].punct('#') && (t[i + 1].punct('[') || inner)) {
            i += 1;
            continue;
        }
        let open = if inner { i + 2 } else { i + 1 };
        let close = closing(t, open);
        t[i..=close].iter_mut().for_each(|x| x.attr = true);
        let body: Vec<&str> = t[open + 1..close].iter().map(|x| x.text.as_str()).collect();
        if body == ["cfg", "(", "test", ")"] {
            if inner {
                whole = true;
            } else {
                // Further attributes, then the item.
                let mut k = close + 1;
                while k + 1 < t.len() && t[k].punct('#') && t[k + 1].punct('[') {
                    let c = closing(t, k + 1);
                    t[k..=c].iter_mut().for_each(|x| x.attr = true);
                    k = c + 1;
                }
                let end = item_end(t, k);
                let words: Vec<&str> = t[k..=end].iter().map(|x| x.text.as_str()).collect();
                if let Some(p) = words.iter().position(|w| *w == "mod") {
                    if words.get(p + 2) == Some(&";") {
                        test_mods.push(words[p + 1].to_string());
                    }
                }
                t[i..=end].iter_mut().for_each(|x| x.test = true);
                i = end + 1;
                continue;
            }
        }
        i = close + 1;
    }
    if whole {
        t.iter_mut().for_each(|x| x.test = true);
    }
    (whole, test_mods)
}

/// One source file of the crate.
#[derive(Debug, Clone)]
pub struct File {
    /// Path from the repository root, `/`-separated: `src/engine/data.rs`.
    pub rel: String,
    pub text: String,
    pub tokens: Vec<Token>,
    /// The module path (`["engine", "data"]`); `None` for `src/main.rs`, the binary crate.
    pub module: Option<Vec<String>>,
    /// Test code throughout: under a `tests` directory, declared `#[cfg(test)] mod x;`, or
    /// inside such a module.
    pub test_only: bool,
    test_mods: Vec<String>,
}

impl File {
    /// The trimmed text of line `n` (1-based).
    pub fn line(&self, n: usize) -> &str {
        self.text.lines().nth(n - 1).unwrap_or("").trim()
    }
}

/// Where an edge of the file graph comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The importing file and the line of the first path that creates the edge.
    pub from: String,
    pub to: String,
    pub line: usize,
}

/// The crate's source files.
#[derive(Debug, Clone)]
pub struct Crate {
    pub files: Vec<File>,
}

fn module_of(rel: &str) -> Option<Vec<String>> {
    let inner = rel.strip_prefix("src/")?.strip_suffix(".rs")?;
    if inner == "main" {
        return None;
    }
    let mut parts: Vec<String> = inner.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

impl Crate {
    /// The crate made of these files: `(path from the repository root, text)`.
    pub fn new(sources: Vec<(String, String)>) -> Crate {
        let mut files: Vec<File> = sources
            .into_iter()
            .map(|(rel, text)| {
                let mut tokens = lex(&text);
                let (whole, test_mods) = mark(&mut tokens);
                let under_tests = rel.split('/').rev().skip(1).any(|d| d == "tests");
                File { module: module_of(&rel), rel, text, tokens, test_only: whole || under_tests, test_mods }
            })
            .collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        // `#[cfg(test)] mod x;` makes `x` and everything under it test code.
        let test_roots: Vec<Vec<String>> = files
            .iter()
            .filter_map(|f| Some((f.module.clone()?, &f.test_mods)))
            .flat_map(|(m, names)| names.iter().map(move |n| [m.clone(), vec![n.clone()]].concat()))
            .collect();
        for f in &mut files {
            if f.module.as_ref().is_some_and(|m| test_roots.iter().any(|r| m.starts_with(r))) {
                f.test_only = true;
            }
        }
        Crate { files }
    }

    /// The crate in the repository at `root`: every `.rs` file under `root/src`.
    pub fn read(root: &Path) -> Crate {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(root, &path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                    out.push((rel, text));
                }
            }
        }
        let mut sources = Vec::new();
        walk(root, &root.join("src"), &mut sources);
        assert!(!sources.is_empty(), "no sources under {}/src", root.display());
        Crate::new(sources)
    }

    /// The file -> file graph: `from -> to -> the edge` (its first line). See `tests/layering.rs`
    /// for what makes an edge.
    pub fn graph(&self) -> BTreeMap<String, BTreeMap<String, Edge>> {
        let modules: BTreeMap<&[String], &File> =
            self.files.iter().filter(|f| !f.test_only).filter_map(|f| Some((f.module.as_deref()?, f))).collect();
        let mut graph: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
        for (&module, file) in &modules {
            let out = graph.entry(file.rel.clone()).or_default();
            for (ctx, path, line) in references(&file.tokens) {
                let here: Vec<String> = [module, &ctx[..]].concat();
                let relative = !matches!(path[0].as_str(), "crate" | "super" | "self");
                if relative && !modules.contains_key(&[&here[..], &path[..1]].concat()[..]) {
                    continue; // not a child module: an external crate or a local item
                }
                let Some(target) = resolve(&here, &path, |m| modules.contains_key(m)) else { continue };
                let to = &modules[&target[..]].rel;
                if *to != file.rel && !out.contains_key(to) {
                    out.insert(to.clone(), Edge { from: file.rel.clone(), to: to.clone(), line });
                }
            }
        }
        graph
    }
}

/// The longest prefix of `path`, read in module `here`, that is a file module.
fn resolve(here: &[String], path: &[String], is_module: impl Fn(&[String]) -> bool) -> Option<Vec<String>> {
    let mut base = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
    }
    let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len()).rev().map(|k| &full[..k]).find(|m| is_module(m)).map(<[String]>::to_vec)
}

/// Parses the use tree at `t[*i]` with `prefix`, appending each leaf path and its line.
fn use_tree(t: &[&Token], i: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) {
    let mut path = prefix.to_vec();
    if t.get(*i).is_some_and(|x| x.kind == Kind::PathSep) {
        *i += 1; // `::std::…`: an external crate
        path.push("::".to_string());
    }
    while let Some(tok) = t.get(*i) {
        if tok.kind == Kind::Ident && tok.text != "as" {
            if tok.text != "self" || path.is_empty() {
                path.push(tok.text.clone());
            }
            *i += 1;
            if t.get(*i).is_some_and(|x| x.kind == Kind::PathSep) {
                *i += 1;
                continue;
            }
            if t.get(*i).is_some_and(|x| x.ident("as")) {
                *i += 2; // `as name`
            }
            out.push((path, tok.line));
            return;
        }
        if tok.punct('*') {
            *i += 1;
            out.push((path, tok.line));
            return;
        }
        if tok.punct('{') {
            *i += 1;
            while t.get(*i).is_some_and(|x| !x.punct('}')) {
                if t[*i].punct(',') {
                    *i += 1;
                    continue;
                }
                let before = *i;
                use_tree(t, i, &path, out);
                if *i == before {
                    *i += 1; // not a use tree: skip the token
                }
            }
            *i += 1;
            return;
        }
        return;
    }
}

/// Every path in the non-test code of a file that may name a module of the crate: the leaves of
/// `use` declarations (not `pub use`) and qualified paths `a::b` that start a path. Each with
/// its inline-module context (`mod inner { … }` in the file) and line.
fn references(tokens: &[Token]) -> Vec<(Vec<String>, Vec<String>, usize)> {
    let t: Vec<&Token> = tokens.iter().filter(|x| !x.test && !x.attr).collect();
    let mut out = Vec::new();
    let mut ctx: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        let tok = t[i];
        if tok.punct('{') {
            depth += 1;
        } else if tok.punct('}') {
            if ctx.last().is_some_and(|(_, d)| *d == depth) {
                ctx.pop();
            }
            depth = depth.saturating_sub(1);
        } else if tok.ident("mod")
            && t.get(i + 1).is_some_and(|x| x.kind == Kind::Ident)
            && t.get(i + 2).is_some_and(|x| x.punct('{'))
        {
            ctx.push((t[i + 1].text.clone(), depth + 1));
            i += 2;
            continue;
        } else if tok.ident("use") {
            let public = match i.checked_sub(1).map(|k| t[k]) {
                Some(p) if p.ident("pub") => true,
                Some(p) if p.punct(')') => {
                    (0..i - 1).rev().find(|&k| t[k].punct('(')).is_some_and(|k| k > 0 && t[k - 1].ident("pub"))
                }
                _ => false,
            };
            let mut leaves = Vec::new();
            let mut j = i + 1;
            if !public {
                use_tree(&t, &mut j, &[], &mut leaves);
            }
            let here: Vec<String> = ctx.iter().map(|(n, _)| n.clone()).collect();
            out.extend(leaves.into_iter().filter(|(p, _)| !p.is_empty()).map(|(p, l)| (here.clone(), p, l)));
            while j < t.len() && !t[j].punct(';') {
                j += 1;
            }
            i = j + 1;
            continue;
        } else if tok.kind == Kind::Ident
            && t.get(i + 1).is_some_and(|x| x.kind == Kind::PathSep)
            && !i.checked_sub(1).is_some_and(|k| t[k].kind == Kind::PathSep)
        {
            let mut path = vec![tok.text.clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|x| x.kind == Kind::PathSep)
                && t.get(j + 1).is_some_and(|x| x.kind == Kind::Ident)
            {
                path.push(t[j + 1].text.clone());
                j += 2;
            }
            out.push((ctx.iter().map(|(n, _)| n.clone()).collect(), path, tok.line));
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// The strongly connected components of `graph` with more than one node (Tarjan), each sorted,
/// in the order of their smallest node.
pub fn cycles<E>(graph: &BTreeMap<String, BTreeMap<String, E>>) -> Vec<Vec<String>> {
    struct State<'a, E> {
        graph: &'a BTreeMap<String, BTreeMap<String, E>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a, E>(s: &mut State<'a, E>, v: &'a str) {
        let graph = s.graph;
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle through `start` inside `component` (breadth-first), as its nodes from
/// `start` back to `start`.
pub fn shortest_cycle<E>(
    graph: &BTreeMap<String, BTreeMap<String, E>>,
    component: &[String],
    start: &str,
) -> Vec<String> {
    let inside: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|m| m.keys()).map(String::as_str) {
            if w == start {
                let mut back = vec![v];
                while let Some(&p) = back.last().and_then(|at| parent.get(at)) {
                    back.push(p);
                }
                let mut cycle: Vec<String> = back.iter().rev().map(|s| s.to_string()).collect();
                cycle.push(start.to_string());
                return cycle;
            }
            if inside.contains(w) && !parent.contains_key(w) && w != start {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.to_string()]
}
