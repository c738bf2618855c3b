//! Architecture rules for `src/`, checked by reading the source text (std only, no parser crate).
//!
//! **No module imports a module that imports it back.** Every path that starts with `crate::`,
//! `super::` (repeated or not) or `self::`, or with the name of a child module the file declares
//! (`pub use channel::Target;` in `hub/mod.rs`), is an import of the deepest module *file* it
//! names: `crate::store::keys::Record::Alert` imports `store::keys`, `crate::store::Store` imports
//! `store`. Such paths count in `use` declarations (nested groups expanded; `{self, ..}` is the
//! module itself) and anywhere in code. `pub use` re-exports are imports; `mod x;` declarations are
//! not. A name a module re-exports (`pub use`, any visibility, renames and chains followed) imports
//! the module it comes from as well: `crate::Config` imports `config` (the crate root itself is
//! not a node, since `lib.rs` only declares modules and re-exports). A string in an attribute that
//! is a path (`#[serde(default = "crate::config::x")]`) counts as a path in code. Comments, string and char literals, `#[cfg(test)]` items and the files of
//! `#[cfg(test)] mod x;` declarations are not looked at; `main.rs` (the binary) is not either.
//! The graph must be acyclic at every depth: top-level modules, where every module is collapsed
//! into its first segment (`hub -> store`), each depth below (`transport::sockjs ->
//! transport::gateway` at depth 2), and the module files (`hub::channel -> hub`).
//!
//! **`lib.rs`'s Layout lists every top-level module once, from the top**, and no import points up
//! that list.
//! A failure lists every cycle with the `file:line` of each import in it.
//!
//! **Only the sled engine names `sled`.** Outside comments, strings and test code, the identifier
//! `sled` appears only in `src/store/sled/` (or `src/store/sled.rs`), and in `src/store/mod.rs` on
//! a line that declares the module (`pub mod sled;`) or re-exports from it (`pub use self::sled::..`,
//! `pub use sled::..`).
//!
//! Print the module graph (top-level edges, then file edges):
//!
//! ```text
//! LOOKOUT_MODULE_GRAPH=1 cargo test --test architecture -- --nocapture
//! ```
//!
//! Draw it: `LOOKOUT_MODULE_GRAPH=dot` prints Graphviz instead, the files grouped in boxes by
//! top-level module (`apt install graphviz` for `dot`):
//!
//! ```text
//! LOOKOUT_MODULE_GRAPH=dot cargo test -q --test architecture no_module_imports -- --nocapture \
//!     | sed -n '/^digraph/,/^}/p' | dot -Tsvg > modules.svg
//! ```
//!
//! Check (and print) another tree, e.g. an older commit checked out with `git worktree add`:
//!
//! ```text
//! LOOKOUT_SRC=/tmp/old/src LOOKOUT_MODULE_GRAPH=1 cargo test --test architecture -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module below the crate root: `[]` is `lib.rs`, `["hub", "channel"]` is `hub/channel.rs`.
type ModPath = Vec<String>;

/// How a module is named in reports: `hub::channel`, or `crate` for the root.
fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

// ---------------------------------------------------------------------------------------------
// Stripping: comments, literals and test code become spaces; newlines stay, and so line numbers.
// ---------------------------------------------------------------------------------------------

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn blank(chars: &mut [char], from: usize, to: usize) {
    let to = to.min(chars.len());
    for c in chars.iter_mut().take(to).skip(from) {
        if *c != '\n' {
            *c = ' ';
        }
    }
}

/// End (exclusive) of a `"..."` literal whose body starts at `from`.
fn end_of_quoted(c: &[char], from: usize) -> usize {
    let mut j = from;
    while j < c.len() {
        match c[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    c.len()
}

/// End (exclusive) of a raw string whose hashes (or quote) start at `from`; `None` if it is not
/// one (`r#type` is a raw identifier).
fn end_of_raw(c: &[char], from: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut k = from;
    while at(k) == '#' {
        k += 1;
    }
    if at(k) != '"' {
        return None;
    }
    let hashes = k - from;
    k += 1;
    while k < c.len() {
        if c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(c.len())
}

/// End (exclusive) of a char literal at `i` (a `'`); `None` for a lifetime or label (`'a`).
fn end_of_char_literal(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    if at(i + 1) == '\\' {
        let mut k = i + 3;
        while k < c.len() && c[k] != '\'' && c[k] != '\n' {
            k += 1;
        }
        Some((k + 1).min(c.len()))
    } else if at(i + 2) == '\'' && at(i + 1) != '\n' && at(i + 1) != '\'' {
        Some(i + 3)
    } else {
        None
    }
}

/// The source with comments (line, block — nested — and doc) and string, byte string, raw string
/// and char literals replaced by spaces. Lifetimes stay.
fn strip_comments_and_literals(src: &str) -> Vec<char> {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut i = 0;
    while i < c.len() {
        let start = i;
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0usize;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = end_of_quoted(&c, i + 1);
        } else if ch == '\'' {
            match end_of_char_literal(&c, i) {
                Some(end) => i = end,
                None => {
                    i += 1;
                    continue;
                }
            }
        } else if is_ident_start(ch) {
            let mut j = i;
            while j < c.len() && is_ident_continue(c[j]) {
                j += 1;
            }
            let word: String = c[i..j].iter().collect();
            let end = match (word.as_str(), at(j)) {
                ("b" | "c", '"') => Some(end_of_quoted(&c, j + 1)),
                ("b", '\'') => end_of_char_literal(&c, j),
                ("r" | "br" | "cr", '"' | '#') => end_of_raw(&c, j),
                _ => None,
            };
            match end {
                Some(end) => i = end,
                None => {
                    i = j;
                    continue;
                }
            }
        } else {
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    out
}

/// Puts back the paths that attributes name in strings (`#[serde(default =
/// "crate::config::x")]`, `with = "super::y"`), so that they count as paths in code: a string
/// literal inside `#[..]` whose whole text is a path starting with `crate`, `super` or `self`.
fn restore_attribute_paths(original: &str, chars: &mut [char]) {
    let c: Vec<char> = original.chars().collect();
    let tokens = tokenize(chars);
    let mut k = 0;
    while k < tokens.len() {
        let open = match (text(&tokens, k), text(&tokens, k + 1)) {
            ("#", "[") => k + 1,
            ("#", "!") if text(&tokens, k + 2) == "[" => k + 2,
            _ => {
                k += 1;
                continue;
            }
        };
        let close = matching(&tokens, open);
        let (from, to) = (tokens[open].start, tokens[close].end.min(c.len()));
        let mut j = from;
        while j < to {
            if c[j] != '"' || chars[j] != ' ' {
                j += 1;
                continue;
            }
            let end = end_of_quoted(&c, j + 1);
            let body: String = c[j + 1..end.saturating_sub(1).max(j + 1)].iter().collect();
            let segments: Vec<&str> = body.split("::").collect();
            let is_path = segments.len() >= 2
                && matches!(segments[0], "crate" | "super" | "self")
                && segments.iter().all(|s| {
                    s.chars().next().is_some_and(is_ident_start) && s.chars().all(is_ident_continue)
                });
            if is_path {
                for (offset, ch) in body.chars().enumerate() {
                    chars[j + 1 + offset] = ch;
                }
            }
            j = end;
        }
        k = close + 1;
    }
}

#[derive(Clone, Debug)]
struct Token {
    text: String,
    line: usize,
    start: usize,
    end: usize,
    ident: bool,
}

/// Identifiers (`r#x` kept as `r#x`), numbers, lifetimes, `::`, and single punctuation characters.
/// Expects stripped text: no comments or literals.
fn tokenize(c: &[char]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut ident = false;
        if is_ident_start(ch) {
            ident = true;
            while i < c.len() && is_ident_continue(c[i]) {
                i += 1;
            }
            let raw = i == start + 1 && ch == 'r' && c.get(i) == Some(&'#');
            if raw && c.get(i + 1).is_some_and(|&n| is_ident_start(n)) {
                i += 1;
                while i < c.len() && is_ident_continue(c[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() || ch == '\'' {
            i += 1;
            while i < c.len() && is_ident_continue(c[i]) {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            i += 1;
        }
        tokens.push(Token {
            text: c[start..i].iter().collect(),
            line,
            start,
            end: i,
            ident,
        });
    }
    tokens
}

fn text(tokens: &[Token], k: usize) -> &str {
    tokens.get(k).map_or("", |t| t.text.as_str())
}

/// Index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// Whether a `cfg` predicate holds only under test: `test`, or `all(.., test, ..)`.
fn test_only(pred: &[Token]) -> bool {
    let words: Vec<&str> = pred.iter().map(|t| t.text.as_str()).collect();
    if words == ["test"] {
        return true;
    }
    if words.len() < 3 || words[0] != "all" || words[1] != "(" || words[words.len() - 1] != ")" {
        return false;
    }
    let args = &pred[2..pred.len() - 1];
    let mut depth = 0usize;
    let mut from = 0;
    for (k, t) in args.iter().enumerate() {
        match t.text.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                if test_only(&args[from..k]) {
                    return true;
                }
                from = k + 1;
            }
            _ => {}
        }
    }
    test_only(&args[from..])
}

/// Index of the last token of the item (or statement, field, arm) starting at `k`.
fn item_end(tokens: &[Token], mut k: usize) -> usize {
    while text(tokens, k) == "#" && text(tokens, k + 1) == "[" {
        k = matching(tokens, k + 1) + 1;
    }
    let body = k;
    if text(tokens, k) == "pub" {
        k += 1;
        if text(tokens, k) == "(" {
            k = matching(tokens, k) + 1;
        }
    }
    // `let`, `const` and `static` end at their `;`, whatever braces their value has.
    let statement = text(tokens, k) == "let"
        || (matches!(text(tokens, k), "const" | "static")
            && !matches!(
                text(tokens, k + 1),
                "fn" | "unsafe" | "async" | "extern" | "{"
            ));
    let mut depth = 0usize;
    for j in body..tokens.len() {
        match text(tokens, j) {
            "{" if depth == 0 && !statement => return matching(tokens, j),
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                if depth == 0 {
                    return j.saturating_sub(1);
                }
                depth -= 1;
            }
            ";" | "," if depth == 0 => return j,
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// What stripping the test code of a file found.
#[derive(Default)]
struct TestCode {
    /// Names of `#[cfg(test)] mod x;` declarations: their files are test code.
    modules: Vec<String>,
    /// The file is `#![cfg(test)]`.
    whole_file: bool,
}

/// Blanks every `#[cfg(test)]` (or `#[cfg(all(test, ..))]`) item in stripped text.
fn strip_test_items(chars: &mut [char]) -> TestCode {
    let tokens = tokenize(chars);
    let mut found = TestCode::default();
    let mut i = 0;
    while i < tokens.len() {
        if text(&tokens, i) != "#" {
            i += 1;
            continue;
        }
        let inner = text(&tokens, i + 1) == "!";
        let open = if inner { i + 2 } else { i + 1 };
        if text(&tokens, open) != "[" {
            i += 1;
            continue;
        }
        let close = matching(&tokens, open);
        let attr = tokens.get(open + 1..close).unwrap_or(&[]);
        let is_test = attr.len() >= 3
            && attr[0].text == "cfg"
            && attr[1].text == "("
            && attr[attr.len() - 1].text == ")"
            && test_only(&attr[2..attr.len() - 1]);
        if !is_test {
            i = close + 1;
            continue;
        }
        if inner {
            found.whole_file = true;
            blank(chars, 0, usize::MAX);
            return found;
        }
        let end = item_end(&tokens, close + 1).max(close);
        let mut k = close + 1;
        while text(&tokens, k) == "#" && text(&tokens, k + 1) == "[" {
            k = matching(&tokens, k + 1) + 1;
        }
        if text(&tokens, k) == "pub" {
            k += 1;
            if text(&tokens, k) == "(" {
                k = matching(&tokens, k) + 1;
            }
        }
        if text(&tokens, k) == "mod" && text(&tokens, k + 2) == ";" {
            found.modules.push(text(&tokens, k + 1).to_string());
        }
        if let (Some(first), Some(last)) = (tokens.get(i), tokens.get(end)) {
            blank(chars, first.start, last.end);
        }
        i = end + 1;
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Imports: paths, expanded `use` trees, and the module each one resolves to.
// ---------------------------------------------------------------------------------------------

/// One path as written: its segments, and the line of its last segment.
type Segments = Vec<(String, usize)>;

/// One leaf of a `use` tree: its full path, and the name it binds when renamed (`as x`).
type UseLeaf = (Segments, Option<String>);

/// Expands the `use` tree at `pos` (after `use`, or inside a group) into full paths.
fn parse_use_tree(tokens: &[Token], pos: &mut usize, prefix: Segments, out: &mut Vec<UseLeaf>) {
    let mut path = prefix;
    if text(tokens, *pos) == "::" {
        if path.is_empty() {
            // `use ::name` names an external crate.
            path.push(("::".to_string(), tokens[*pos].line));
        }
        *pos += 1;
    }
    loop {
        let Some(tok) = tokens.get(*pos) else { return };
        match tok.text.as_str() {
            "{" => {
                *pos += 1;
                loop {
                    match text(tokens, *pos) {
                        "}" => {
                            *pos += 1;
                            return;
                        }
                        "" | ";" => return,
                        "," => *pos += 1,
                        _ => {
                            let before = *pos;
                            parse_use_tree(tokens, pos, path.clone(), out);
                            if *pos == before {
                                *pos += 1;
                            }
                        }
                    }
                }
            }
            "*" => {
                *pos += 1;
                out.push((path, None));
                return;
            }
            _ if tok.ident => {
                path.push((tok.text.clone(), tok.line));
                *pos += 1;
                if text(tokens, *pos) == "::" {
                    *pos += 1;
                    continue;
                }
                let mut alias = None;
                if text(tokens, *pos) == "as" {
                    alias = Some(text(tokens, *pos + 1).to_string());
                    *pos += 2;
                }
                out.push((path, alias));
                return;
            }
            _ => return,
        }
    }
}

/// Names a module re-exports (`pub use x::Y;`, any visibility, `as` renames included): the
/// module and name a path ends in → the module the item comes from, and its name there (`None`
/// when the re-export names a module itself).
type ReExports = BTreeMap<(ModPath, String), (ModPath, Option<String>)>;

/// The absolute path a written path stands for, `self` segments dropped. `None` if it is not a
/// path into this crate (`std::..`, a local, an external crate).
fn absolute_path(
    scope: &[String],
    segments: &[String],
    children: &BTreeSet<String>,
) -> Option<ModPath> {
    let (first, rest) = segments.split_first()?;
    let mut absolute: ModPath;
    let mut rest = rest;
    match first.as_str() {
        "crate" => absolute = Vec::new(),
        "super" | "self" => {
            absolute = scope.to_vec();
            if first == "super" {
                absolute.pop()?;
            }
            while rest.first().is_some_and(|s| s == "super") {
                absolute.pop()?;
                rest = &rest[1..];
            }
        }
        name if children.contains(name) => {
            absolute = scope.to_vec();
            rest = segments;
        }
        _ => return None,
    }
    absolute.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(absolute)
}

/// The deepest existing module an absolute path names (the crate root, `[]`, at least).
fn deepest_module(path: &[String], modules: &BTreeSet<ModPath>) -> ModPath {
    let mut module = path.to_vec();
    while !module.is_empty() && !modules.contains(&module) {
        module.pop();
    }
    module
}

/// The module files a path imports: the deepest existing module it names, then, when the next
/// segment is a name that module re-exports, the module the item comes from (following chains
/// of re-exports: `crate::Config` imports `config`, `crate::transport::Gateway` imports
/// `transport` and `transport::gateway`). Empty if it is not a path into this crate.
fn resolve(
    scope: &[String],
    segments: &[String],
    children: &BTreeSet<String>,
    modules: &BTreeSet<ModPath>,
    reexports: &ReExports,
) -> Vec<ModPath> {
    let Some(absolute) = absolute_path(scope, segments, children) else {
        return Vec::new();
    };
    let mut module = deepest_module(&absolute, modules);
    let mut name = absolute.get(module.len()).cloned();
    let mut found = vec![module.clone()];
    while let Some(item) = name {
        let Some((source, original)) = reexports.get(&(module.clone(), item)) else {
            break;
        };
        if found.contains(source) {
            break;
        }
        found.push(source.clone());
        module = source.clone();
        name = original.clone();
    }
    found
}

/// Names of the child modules a file declares (`mod x;`), outside any block.
fn declared_children(tokens: &[Token]) -> BTreeSet<String> {
    let mut children = BTreeSet::new();
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate() {
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            "mod" if depth == 0 && text(tokens, k + 2) == ";" => {
                children.insert(text(tokens, k + 1).to_string());
            }
            _ => {}
        }
    }
    children
}

/// The re-exports a file makes at its top level: `pub use`, `pub(crate) use`, `pub(super) use`.
fn find_reexports(tokens: &[Token], module: &[String], modules: &BTreeSet<ModPath>) -> ReExports {
    let children = declared_children(tokens);
    let mut found = ReExports::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match text(tokens, i) {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            "pub" if depth == 0 => {
                let mut k = i + 1;
                if text(tokens, k) == "(" {
                    k = matching(tokens, k) + 1;
                }
                if text(tokens, k) == "use" {
                    let mut pos = k + 1;
                    let mut leaves = Vec::new();
                    parse_use_tree(tokens, &mut pos, Vec::new(), &mut leaves);
                    for (path, alias) in leaves {
                        let words: Vec<String> = path.into_iter().map(|(w, _)| w).collect();
                        let named = words.iter().rev().find(|w| *w != "self").cloned();
                        let (Some(name), Some(absolute)) =
                            (alias.or(named), absolute_path(module, &words, &children))
                        else {
                            continue;
                        };
                        let source = deepest_module(&absolute, modules);
                        let original = absolute.get(source.len()).cloned();
                        found.insert((module.to_vec(), name), (source, original));
                    }
                    i = pos.max(i + 1);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Every import in a file: the module it resolves to and the line it is on.
fn find_imports(
    tokens: &[Token],
    module: &[String],
    modules: &BTreeSet<ModPath>,
    reexports: &ReExports,
) -> Vec<(ModPath, usize)> {
    let children = declared_children(tokens);
    let none = BTreeSet::new();
    let mut found = Vec::new();
    // Inline `mod x { .. }` blocks: the brace depth inside each, and its name.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let mut scope = module.to_vec();
        scope.extend(inline.iter().map(|(_, name)| name.clone()));
        let local = if inline.is_empty() { &children } else { &none };
        let mut resolve_all = |paths: Vec<Segments>| {
            for path in paths {
                let line = path.last().map_or(0, |(_, line)| *line);
                let words: Vec<String> = path.into_iter().map(|(word, _)| word).collect();
                for target in resolve(&scope, &words, local, modules, reexports) {
                    found.push((target, line));
                }
            }
        };
        let tok = &tokens[i];
        let before = if i == 0 { "" } else { text(tokens, i - 1) };
        match tok.text.as_str() {
            "{" => {
                depth += 1;
                if i >= 2 && text(tokens, i - 2) == "mod" && tokens[i - 1].ident {
                    inline.push((depth, tokens[i - 1].text.clone()));
                }
            }
            "}" => {
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "use" if before != "::" && before != "." => {
                let mut pos = i + 1;
                let mut paths = Vec::new();
                parse_use_tree(tokens, &mut pos, Vec::new(), &mut paths);
                resolve_all(paths.into_iter().map(|(path, _)| path).collect());
                i = pos.max(i + 1);
                continue;
            }
            word if tok.ident
                && text(tokens, i + 1) == "::"
                && before != "::"
                && before != "."
                // `pub(in crate::a)` is a visibility, not an import.
                && !(before == "in" && i >= 2 && text(tokens, i - 2) == "(")
                && (matches!(word, "crate" | "super" | "self") || local.contains(word)) =>
            {
                let mut path = vec![(word.to_string(), tok.line)];
                let mut j = i + 1;
                while text(tokens, j) == "::" && tokens.get(j + 1).is_some_and(|t| t.ident) {
                    path.push((tokens[j + 1].text.clone(), tokens[j + 1].line));
                    j += 2;
                }
                resolve_all(vec![path]);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The crate: its files, the two graphs, their cycles.
// ---------------------------------------------------------------------------------------------

/// The module of a file, from its path below `src/`; `None` for the binary (`main.rs`, `bin/`).
fn module_of(rel: &str) -> Option<ModPath> {
    let parts: Vec<&str> = rel.split('/').collect();
    let (file, dirs) = parts.split_last()?;
    let stem = file.strip_suffix(".rs")?;
    if dirs.first() == Some(&"bin") || (dirs.is_empty() && stem == "main") {
        return None;
    }
    let mut module: ModPath = dirs.iter().map(|d| d.to_string()).collect();
    if !(stem == "mod" || (dirs.is_empty() && stem == "lib")) {
        module.push(stem.to_string());
    }
    Some(module)
}

struct SourceFile {
    /// Path as reported: `src/hub/mod.rs`.
    name: String,
    module: ModPath,
    original: String,
    /// Tokens of the text without comments, literals and test code.
    tokens: Vec<Token>,
}

/// Where an import is written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
}

#[derive(Default)]
struct Graph {
    edges: BTreeMap<(String, String), Vec<Site>>,
}

impl Graph {
    fn add(&mut self, from: String, to: String, site: Site) {
        if from != to {
            self.edges.entry((from, to)).or_default().push(site);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.edges
            .keys()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect()
    }

    /// Strongly connected components with more than one module (Tarjan), sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct Tarjan<'g> {
            adjacent: BTreeMap<&'g str, Vec<&'g str>>,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            components: Vec<Vec<String>>,
        }
        impl<'g> Tarjan<'g> {
            fn visit(&mut self, v: &'g str) {
                let n = self.index.len();
                self.index.insert(v, n);
                self.low.insert(v, n);
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.adjacent.get(v).cloned().unwrap_or_default() {
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.on_stack.contains(w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        component.push(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.components.push(component);
                    }
                }
            }
        }
        let mut tarjan = Tarjan {
            adjacent: BTreeMap::new(),
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            components: Vec::new(),
        };
        for (a, b) in self.edges.keys() {
            tarjan
                .adjacent
                .entry(a.as_str())
                .or_default()
                .push(b.as_str());
            tarjan.adjacent.entry(b.as_str()).or_default();
        }
        let nodes: Vec<&str> = tarjan.adjacent.keys().copied().collect();
        for v in nodes {
            if !tarjan.index.contains_key(v) {
                tarjan.visit(v);
            }
        }
        tarjan.components.sort();
        tarjan.components
    }

    /// One paragraph per cycle: its modules, then each edge inside it with where it is written.
    fn describe_cycles(&self, what: &str) -> Vec<String> {
        self.cycles()
            .into_iter()
            .map(|component| {
                let mut out = format!("{what} cycle: {}\n", component.join(", "));
                for ((a, b), sites) in &self.edges {
                    if component.contains(a) && component.contains(b) {
                        out.push_str(&format!("  {a} -> {b}\n"));
                        for site in sites {
                            out.push_str(&format!("      {}:{}\n", site.file, site.line));
                        }
                    }
                }
                out
            })
            .collect()
    }
}

struct Analysis {
    files: Vec<SourceFile>,
    /// Module files: `hub::channel -> hub`.
    file_graph: Graph,
    /// Top-level modules: `hub -> store`.
    top_graph: Graph,
    /// The levels between: at depth 2, every module collapsed into its first two segments
    /// (`transport::sockjs -> transport::gateway`), and so on down to the files.
    nested_graphs: Vec<(usize, Graph)>,
}

impl Analysis {
    /// Analyses `(path below src/, contents)` pairs; `prefix` (`src`) starts reported file names.
    fn new(prefix: &str, sources: Vec<(String, String)>) -> Analysis {
        let mut files = Vec::new();
        let mut test_modules: Vec<ModPath> = Vec::new();
        for (rel, original) in sources {
            let Some(module) = module_of(&rel) else {
                continue;
            };
            let mut chars = strip_comments_and_literals(&original);
            restore_attribute_paths(&original, &mut chars);
            let test_code = strip_test_items(&mut chars);
            if test_code.whole_file {
                test_modules.push(module.clone());
            }
            for name in test_code.modules {
                let mut child = module.clone();
                child.push(name);
                test_modules.push(child);
            }
            files.push(SourceFile {
                name: format!("{prefix}/{rel}"),
                module,
                original,
                tokens: tokenize(&chars),
            });
        }
        files.retain(|f| !test_modules.iter().any(|t| f.module.starts_with(t)));
        let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
        let mut reexports = ReExports::new();
        for file in &files {
            reexports.extend(find_reexports(&file.tokens, &file.module, &modules));
        }
        let deepest = modules.iter().map(Vec::len).max().unwrap_or(0);
        let mut file_graph = Graph::default();
        let mut top_graph = Graph::default();
        let mut nested_graphs: Vec<(usize, Graph)> = (2..deepest)
            .map(|depth| (depth, Graph::default()))
            .collect();
        for file in &files {
            for (target, line) in find_imports(&file.tokens, &file.module, &modules, &reexports) {
                if target.is_empty() || target == file.module {
                    continue;
                }
                let site = Site {
                    file: file.name.clone(),
                    line,
                };
                let top = |m: &[String]| m.first().cloned().unwrap_or_else(|| "crate".to_string());
                top_graph.add(top(&file.module), top(&target), site.clone());
                for (depth, graph) in &mut nested_graphs {
                    let cut = |m: &[String]| display(&m[..m.len().min(*depth)]);
                    graph.add(cut(&file.module), cut(&target), site.clone());
                }
                file_graph.add(display(&file.module), display(&target), site);
            }
        }
        let graphs = [&mut file_graph, &mut top_graph]
            .into_iter()
            .chain(nested_graphs.iter_mut().map(|(_, graph)| graph));
        for graph in graphs {
            for sites in graph.edges.values_mut() {
                sites.sort();
                sites.dedup();
            }
        }
        Analysis {
            files,
            file_graph,
            top_graph,
            nested_graphs,
        }
    }

    /// Reads every `.rs` file below `src`.
    fn of_dir(src: &Path) -> Result<Analysis, String> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut paths: Vec<PathBuf> = entries
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            paths.sort();
            for path in paths {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if path.is_dir() {
                    walk(&path, &rel, out)?;
                } else if name.ends_with(".rs") {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    out.push((rel, text));
                }
            }
            Ok(())
        }
        let mut sources = Vec::new();
        walk(src, "", &mut sources)?;
        if sources.is_empty() {
            return Err(format!("no .rs files below {}", src.display()));
        }
        let prefix = src
            .file_name()
            .map_or("src".into(), |n| n.to_string_lossy().into_owned());
        Ok(Analysis::new(&prefix, sources))
    }

    /// Both graphs' edges, for humans.
    fn graph_text(&self) -> String {
        let mut out = format!("top-level module edges ({}):\n", self.top_graph.edges.len());
        for line in self.top_graph.lines() {
            out.push_str(&format!("{line}\n"));
        }
        for (depth, graph) in &self.nested_graphs {
            out.push_str(&format!(
                "\ndepth-{depth} module edges ({}):\n",
                graph.edges.len()
            ));
            for line in graph.lines() {
                out.push_str(&format!("{line}\n"));
            }
        }
        out.push_str(&format!(
            "\nmodule file edges ({}):\n",
            self.file_graph.edges.len()
        ));
        for line in self.file_graph.lines() {
            out.push_str(&format!("{line}\n"));
        }
        out
    }

    /// The file graph in Graphviz's language, each top-level module's files in a box.
    fn graph_dot(&self) -> String {
        let mut out =
            String::from("digraph modules {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n");
        let mut by_top: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in &self.files {
            let top = file
                .module
                .first()
                .cloned()
                .unwrap_or_else(|| "crate".into());
            by_top.entry(top).or_default().push(display(&file.module));
        }
        for (k, (top, members)) in by_top.iter().enumerate() {
            out.push_str(&format!(
                "  subgraph cluster_{k} {{\n    label=\"{top}\";\n"
            ));
            for member in members {
                out.push_str(&format!("    \"{member}\";\n"));
            }
            out.push_str("  }\n");
        }
        for (a, b) in self.file_graph.edges.keys() {
            out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
        }
        out.push_str("}\n");
        out
    }

    /// Every cycle in any graph, described.
    fn cycles(&self) -> Vec<String> {
        let mut out = self.top_graph.describe_cycles("top-level module");
        for (depth, graph) in &self.nested_graphs {
            out.extend(graph.describe_cycles(&format!("depth-{depth} module")));
        }
        out.extend(self.file_graph.describe_cycles("module file"));
        out
    }

    /// `file:line: code` of every use of the identifier `sled` outside the sled engine.
    fn sled_outside_engine(&self) -> Vec<String> {
        let mut out = Vec::new();
        for file in &self.files {
            if file
                .module
                .starts_with(&["store".to_string(), "sled".to_string()])
            {
                continue;
            }
            let lines: BTreeSet<usize> = file
                .tokens
                .iter()
                .filter(|t| t.text == "sled")
                .map(|t| t.line)
                .filter(|&line| {
                    !(file.module == ["store"] && declares_or_reexports_sled(&file.tokens, line))
                })
                .collect();
            for line in lines {
                let code = file
                    .original
                    .lines()
                    .nth(line - 1)
                    .unwrap_or_default()
                    .trim();
                out.push(format!("{}:{line}: {code}", file.name));
            }
        }
        out
    }
}

/// Whether a line is `mod sled;` (with any visibility), `pub use self::sled::..` or
/// `pub use sled::..`.
fn declares_or_reexports_sled(tokens: &[Token], line: usize) -> bool {
    let words: Vec<&str> = tokens
        .iter()
        .filter(|t| t.line == line)
        .map(|t| t.text.as_str())
        .collect();
    let mut rest = &words[..];
    let public = rest.first() == Some(&"pub");
    if public {
        rest = &rest[1..];
        if rest.first() == Some(&"(") {
            let close = rest
                .iter()
                .position(|w| *w == ")")
                .unwrap_or(rest.len() - 1);
            rest = &rest[close + 1..];
        }
    }
    rest == ["mod", "sled", ";"]
        || (public
            && (rest.starts_with(&["use", "self", "::", "sled", "::"])
                || rest.starts_with(&["use", "sled", "::"])))
}

fn checked_src() -> PathBuf {
    std::env::var_os("LOOKOUT_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src")))
}

fn analysis_of_checked_src() -> Analysis {
    let src = checked_src();
    match Analysis::of_dir(&src) {
        Ok(analysis) => analysis,
        Err(e) => panic!("cannot read the sources in {}: {e}", src.display()),
    }
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let analysis = analysis_of_checked_src();
    match std::env::var("LOOKOUT_MODULE_GRAPH").as_deref() {
        Ok("dot") => println!("{}", analysis.graph_dot()),
        Ok(_) => {
            println!("module graph of {}\n", checked_src().display());
            println!("{}", analysis.graph_text());
        }
        Err(_) => {}
    }
    let cycles = analysis.cycles();
    assert!(
        cycles.is_empty(),
        "{} import cycle(s) in {}; each edge lists the imports that make it:\n\n{}",
        cycles.len(),
        checked_src().display(),
        cycles.join("\n")
    );
}

/// Every public type's name (`pub`, `pub(crate)`, `pub(super)` struct, enum, type, trait) with
/// where it is declared.
fn public_types(analysis: &Analysis) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &analysis.files {
        let t = &file.tokens;
        for k in 0..t.len() {
            if t[k].text != "pub" {
                continue;
            }
            let mut j = k + 1;
            if text(t, j) == "(" {
                j = matching(t, j) + 1;
            }
            if matches!(text(t, j), "struct" | "enum" | "type" | "trait") {
                if let Some(name) = t.get(j + 1).filter(|n| n.ident) {
                    found
                        .entry(name.text.clone())
                        .or_default()
                        .push(format!("{}:{}", file.name, name.line));
                }
            }
        }
    }
    found
}

/// Public type names declared in more than one place, each with its places.
fn types_named_twice(analysis: &Analysis) -> Vec<String> {
    public_types(analysis)
        .into_iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(name, places)| format!("{name}: {}", places.join(", ")))
        .collect()
}

#[test]
fn no_two_public_types_share_a_name() {
    let twice = types_named_twice(&analysis_of_checked_src());
    assert!(
        twice.is_empty(),
        "a reader (and a `use`) cannot tell these apart by name:\n{}",
        twice.join("\n")
    );
}

#[test]
fn a_type_name_declared_in_two_files_is_reported_with_both() {
    let tree = [
        ("lib.rs", ""),
        ("http.rs", "pub type Body = Vec<u8>;\nstruct Private;"),
        ("hub.rs", "\npub(crate) struct Body {\n}\nstruct Private;"),
    ];
    assert_eq!(
        types_named_twice(&analysis(&tree)),
        ["Body: src/http.rs:1, src/hub.rs:2"]
    );
}

/// The order of the modules in `lib.rs`'s Layout list ("The modules, from the top"): every
/// top-level module, named as [`x`].
fn layout_order(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        if doc.contains("The modules, from the top") {
            inside = true;
            continue;
        }
        if inside && doc.trim().is_empty() {
            break;
        }
        if inside {
            for piece in doc.split("[`").skip(1) {
                if let Some((name, _)) = piece.split_once("`]") {
                    order.push(name.to_string());
                }
            }
        }
    }
    order
}

/// What is wrong with a Layout list: modules it omits or lists twice, and imports that point up.
fn layout_problems(analysis: &Analysis, lib: &str) -> Vec<String> {
    let order = layout_order(lib);
    let mut problems = Vec::new();
    let declared: BTreeSet<String> = analysis
        .files
        .iter()
        .filter_map(|f| f.module.first().cloned())
        .collect();
    for module in &declared {
        match order.iter().filter(|m| *m == module).count() {
            0 => problems.push(format!("`{module}` is not in the Layout list")),
            1 => {}
            n => problems.push(format!("`{module}` is in the Layout list {n} times")),
        }
    }
    let place = |m: &str| order.iter().position(|x| x == m);
    for ((from, to), sites) in &analysis.top_graph.edges {
        if let (Some(a), Some(b)) = (place(from), place(to)) {
            if a > b {
                let site = &sites[0];
                problems.push(format!(
                    "`{from} -> {to}` points up the Layout list ({}:{})",
                    site.file, site.line
                ));
            }
        }
    }
    problems
}

#[test]
fn lib_rs_lists_every_module_from_the_top_and_imports_point_down_the_list() {
    let src = checked_src();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let problems = layout_problems(&analysis_of_checked_src(), &lib);
    assert!(
        problems.is_empty(),
        "lib.rs's Layout:\n{}",
        problems.join("\n")
    );
}

#[test]
fn only_the_sled_engine_names_sled() {
    let uses = analysis_of_checked_src().sled_outside_engine();
    assert!(
        uses.is_empty(),
        "`sled` is named outside src/store/sled/ (src/store/mod.rs may only declare `mod sled;` \
         and `pub use self::sled::..`):\n{}",
        uses.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The scanner itself.
// ---------------------------------------------------------------------------------------------

/// The file-module edges of a tree given as `(path below src/, contents)`.
fn edges(files: &[(&str, &str)]) -> Vec<String> {
    let sources = files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    Analysis::new("src", sources).file_graph.lines()
}

#[test]
fn a_nested_use_group_is_one_import_per_leaf() {
    let tree = [
        ("lib.rs", "pub mod a; pub mod hub;"),
        ("hub/mod.rs", "pub mod channel; pub mod conn;"),
        ("hub/channel.rs", ""),
        ("hub/conn.rs", ""),
        (
            "a.rs",
            "use crate::hub::{\n    channel::{Target, Denied},\n    conn,\n    Hub,\n};",
        ),
    ];
    assert_eq!(
        edges(&tree),
        ["a -> hub", "a -> hub::channel", "a -> hub::conn"]
    );
    let analysis = Analysis::new(
        "src",
        tree.iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect(),
    );
    let lines: Vec<usize> = analysis
        .file_graph
        .edges
        .values()
        .flatten()
        .map(|s| s.line)
        .collect();
    assert_eq!(lines, [4, 2, 3], "each leaf is reported on its own line");
}

#[test]
fn a_group_with_self_imports_the_module_itself() {
    let tree = [
        ("lib.rs", ""),
        ("hub.rs", ""),
        ("a.rs", "use crate::hub::{self, Hub};"),
    ];
    assert_eq!(edges(&tree), ["a -> hub"]);
}

#[test]
fn a_path_in_code_imports_the_deepest_module_file_it_names() {
    let tree = [
        ("lib.rs", ""),
        ("store/mod.rs", "pub mod keys;"),
        ("store/keys.rs", ""),
        ("protocol.rs", ""),
        (
            "a.rs",
            "fn f(r: &crate::store::keys::Record) -> bool {\n    \
             matches!(r, crate::store::keys::Record::Alert { .. }) && crate::protocol::now_millis() > 0\n}\n\
             fn g() -> crate::store::Store { todo!() }",
        ),
    ];
    assert_eq!(
        edges(&tree),
        ["a -> protocol", "a -> store", "a -> store::keys"]
    );
}

#[test]
fn strings_comments_and_char_literals_are_not_imports() {
    let tree = [
        ("lib.rs", ""),
        ("x.rs", ""),
        ("y.rs", ""),
        (
            "a.rs",
            r####"
            // crate::x
            /// crate::x
            /* crate::x /* nested */ crate::x */
            const S: &str = "crate::x \" crate::x";
            const R: &str = r#"crate::x " crate::x"#;
            const B: &[u8] = b"crate::x";
            const C: char = '"';
            fn f<'a>(s: &'a str) -> &'a str { let r#type = '\''; s }
            fn g() { crate::y::h() }
            "####,
        ),
    ];
    assert_eq!(edges(&tree), ["a -> y"]);
}

#[test]
fn test_code_is_not_looked_at() {
    let tree = [
        ("lib.rs", ""),
        ("x.rs", ""),
        ("y.rs", ""),
        (
            "a/mod.rs",
            "mod b;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod more_tests {\n    use crate::x;\n}\n",
        ),
        ("a/b.rs", "#[cfg(test)]\nfn helper() { crate::x::f() }\nfn real() { crate::y::f() }"),
        ("a/tests.rs", "use crate::x;"),
    ];
    assert_eq!(edges(&tree), ["a::b -> y"]);
}

#[test]
fn super_and_self_are_relative_to_the_file_module() {
    let tree = [
        ("lib.rs", ""),
        ("a/mod.rs", "use super::Config; use self::b::B;"),
        ("a/b.rs", "use super::A; use super::super::x::X;"),
        ("a/c/mod.rs", "use super::super::x::X; use self::d::D;"),
        ("a/c/d.rs", ""),
        ("x.rs", ""),
    ];
    assert_eq!(
        edges(&tree),
        [
            "a -> a::b",
            "a::b -> a",
            "a::b -> x",
            "a::c -> a::c::d",
            "a::c -> x"
        ]
    );
}

#[test]
fn an_inline_module_belongs_to_its_file() {
    let tree = [
        ("lib.rs", ""),
        ("x.rs", ""),
        (
            "a.rs",
            "pub mod close {\n    use super::A;\n    use super::super::x::X;\n}\n",
        ),
    ];
    assert_eq!(edges(&tree), ["a -> x"]);
}

#[test]
fn mod_declarations_are_not_imports_but_re_exports_and_child_paths_are() {
    let tree = [
        ("lib.rs", "pub mod hub; pub use hub::Hub;"),
        (
            "hub/mod.rs",
            "pub mod channel;\npub mod conn;\npub use channel::Target;",
        ),
        ("hub/channel.rs", ""),
        ("hub/conn.rs", ""),
        ("a.rs", "use crate::Config;"),
    ];
    assert_eq!(edges(&tree), ["crate -> hub", "hub -> hub::channel"]);
}

#[test]
fn cycles_are_reported_with_every_import_in_them() {
    let tree = [
        ("lib.rs", ""),
        ("hub/mod.rs", "pub mod conn;"),
        ("hub/conn.rs", "\nuse crate::store::Store;"),
        ("store.rs", "fn f() {\n    crate::hub::conn::g();\n}"),
        ("alerts.rs", "use crate::store::Store;"),
    ];
    let sources = tree
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    let analysis = Analysis::new("src", sources);
    let top = analysis.top_graph.describe_cycles("top-level module");
    assert_eq!(
        top,
        [
            "top-level module cycle: hub, store\n  hub -> store\n      src/hub/conn.rs:2\n  \
          store -> hub\n      src/store.rs:2\n"
        ]
    );
    let file = analysis.file_graph.describe_cycles("module file");
    assert_eq!(file.len(), 1);
    assert!(file[0].starts_with("module file cycle: hub::conn, store\n"));
}

fn analysis(tree: &[(&str, &str)]) -> Analysis {
    let sources = tree
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    Analysis::new("src", sources)
}

#[test]
fn a_name_the_crate_root_re_exports_imports_the_module_it_comes_from() {
    let tree = [
        ("lib.rs", "pub mod a;\npub mod b;\npub use b::Thing;"),
        ("a.rs", "use crate::Thing;"),
        ("b.rs", "\nfn f() { crate::a::g() }"),
    ];
    let found = analysis(&tree);
    assert_eq!(found.file_graph.lines(), ["a -> b", "b -> a", "crate -> b"]);
    assert_eq!(
        found.cycles()[0],
        "top-level module cycle: a, b\n  a -> b\n      src/a.rs:1\n  b -> a\n      src/b.rs:2\n"
    );
}

#[test]
fn re_exports_are_followed_through_renames_and_chains() {
    let tree = [
        ("lib.rs", "pub mod t;\npub mod x;\npub use t::Gate as Door;"),
        (
            "t/mod.rs",
            "pub mod gate;\npub(crate) use self::gate::{Gate, Key as Lock};",
        ),
        ("t/gate.rs", ""),
        ("x.rs", "use crate::Door;\nfn f(_: crate::t::Lock) {}"),
    ];
    assert_eq!(
        analysis(&tree).file_graph.lines(),
        [
            "crate -> t",
            "crate -> t::gate",
            "t -> t::gate",
            "x -> t",
            "x -> t::gate"
        ]
    );
}

#[test]
fn a_path_an_attribute_names_in_a_string_is_an_import() {
    let tree = [
        ("lib.rs", ""),
        (
            "a.rs",
            "#[derive(Deserialize)]\nstruct S {\n    #[serde(default = \"crate::b::seven\")]\n    \
             #[doc = \"crate::c is not a path: it has words\"]\n    x: u8,\n}",
        ),
        ("b.rs", "fn seven() -> u8 { crate::a::S::default().x }"),
        ("c.rs", ""),
    ];
    let found = analysis(&tree);
    assert_eq!(found.file_graph.lines(), ["a -> b", "b -> a"]);
    assert!(
        found.cycles()[0].contains("src/a.rs:3"),
        "{:?}",
        found.cycles()
    );
}

#[test]
fn modules_collapsed_at_every_depth_have_no_cycle_either() {
    // No two files import each other, but the directory `t/s` and the file `t/g.rs` do.
    let tree = [
        ("lib.rs", "pub mod t;"),
        ("t/mod.rs", "pub mod g;\npub mod s;"),
        ("t/g.rs", "use super::s::session::Sessions;"),
        ("t/s/mod.rs", "pub mod session;\nuse super::g::Gateway;"),
        ("t/s/session.rs", ""),
    ];
    let found = analysis(&tree);
    assert!(found.file_graph.cycles().is_empty());
    assert_eq!(
        found.cycles(),
        [
            "depth-2 module cycle: t::g, t::s\n  t::g -> t::s\n      src/t/g.rs:1\n  \
          t::s -> t::g\n      src/t/s/mod.rs:2\n"
        ]
    );
}

#[test]
fn the_layout_list_names_every_module_once_and_no_import_points_up_it() {
    let lib = "//! The modules, from the top:\n//! - [`a`]: first. [`b`]: second.\n//! - [`b`]: again.\n//!\n\
               //! - [`c`]: after the list.\npub mod a;\npub mod b;\npub mod c;";
    let tree = [
        ("lib.rs", lib),
        ("a.rs", ""),
        ("b.rs", "fn f() { crate::a::g() }"),
        ("c.rs", ""),
    ];
    assert_eq!(
        layout_problems(&analysis(&tree), lib),
        [
            "`b` is in the Layout list 2 times",
            "`c` is not in the Layout list",
            "`b -> a` points up the Layout list (src/b.rs:1)"
        ]
    );
}

#[test]
fn sled_counts_as_a_whole_word_outside_comments_and_strings() {
    let tree = [
        ("lib.rs", "pub mod store; pub mod hub;"),
        (
            "store/mod.rs",
            "pub mod sled;\npub use self::sled::SledStore;\nuse sled::Db;\nstruct SledStore; // sled\n",
        ),
        ("store/sled/mod.rs", "use sled::Db;"),
        ("hub.rs", "fn f(sledding: u8) -> &'static str { \"sled\" }\nfn g() -> ::sled::Db { todo!() }"),
    ];
    let sources = tree
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    assert_eq!(
        Analysis::new("src", sources).sled_outside_engine(),
        [
            "src/store/mod.rs:3: use sled::Db;",
            "src/hub.rs:2: fn g() -> ::sled::Db { todo!() }"
        ]
    );
}

/// The threat model (docs/security.md) names a test for every claim: each one it names exists
/// (`file name` for a test in tests/file.rs, `--lib name` for a unit test under src/).
#[test]
fn every_test_security_md_names_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md");
    let mut sources = String::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources += &std::fs::read_to_string(&path).expect("source");
            }
        }
    }
    let mut named = 0;
    for span in text.split('`').skip(1).step_by(2) {
        let words: Vec<&str> = span.split_whitespace().collect();
        let found = match words.as_slice() {
            ["--lib", name] => sources.contains(&format!("fn {name}(")),
            [file, name]
                if name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && root.join(format!("tests/{file}.rs")).exists() =>
            {
                std::fs::read_to_string(root.join(format!("tests/{file}.rs")))
                    .expect("test file")
                    .contains(&format!("fn {name}("))
            }
            _ => continue,
        };
        assert!(
            found,
            "docs/security.md names `{span}`, which does not exist"
        );
        named += 1;
    }
    assert!(named >= 30, "docs/security.md names {named} tests");
}
