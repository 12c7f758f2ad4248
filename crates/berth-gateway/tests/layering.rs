//! The gateway's modules import only from layers below their own (docs/architecture.md,
//! "Layers of the gateway"): every `crate::` path in `src/` is checked against the
//! table in that document, so the document and the code cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = declared_layers(&root.join("../../docs/architecture.md"));
    let imports = crate_imports(&root.join("src"));

    let undeclared: Vec<&String> = imports
        .keys()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        undeclared.is_empty(),
        "modules missing from the layer table in docs/architecture.md: {undeclared:?}"
    );
    let stale: Vec<&String> = layers
        .keys()
        .filter(|m| !imports.contains_key(*m))
        .collect();
    assert!(
        stale.is_empty(),
        "the layer table names modules that do not exist: {stale:?}"
    );

    let mut violations = Vec::new();
    for (module, used) in &imports {
        for (target, file) in used {
            if target == module {
                continue;
            }
            if layers[target] >= layers[module] {
                violations.push(format!(
                    "{file}: `{module}` (layer {}) imports `{target}` (layer {})",
                    layers[module], layers[target]
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports from the same layer or above:\n{}",
        violations.join("\n")
    );
}

/// Layer number of each module, from the table under "## Layers of the gateway".
fn declared_layers(doc: &Path) -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(doc).expect("docs/architecture.md");
    let section = text
        .split("## Layers of the gateway")
        .nth(1)
        .expect("a \"## Layers of the gateway\" section in docs/architecture.md");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut layers = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.get(1).map(|c| c.parse::<u32>()) else {
            continue;
        };
        for module in cells[2].split('`').skip(1).step_by(2) {
            let previous = layers.insert(module.to_owned(), layer);
            assert!(previous.is_none(), "`{module}` is declared twice");
        }
    }
    assert!(!layers.is_empty(), "no layer rows found");
    layers
}

/// For each top-level module (`lib` for the crate root), the top-level modules its
/// files name through `crate::`, with the file that does.
fn crate_imports(src: &Path) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(src, f)).collect();
    let mut imports: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        let module = top_module(src, file);
        let shown = file.strip_prefix(src).unwrap().display().to_string();
        let used = imports.entry(module).or_default();
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for target in crate_paths(code, &modules) {
                used.insert((target, shown.clone()));
            }
        }
    }
    imports
}

/// The top-level modules named by `crate::` paths on one line of code; anything else
/// after `crate::` is an item of the crate root (`lib`).
fn crate_paths(code: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let to_module = |name: &str| {
        if modules.contains(name) {
            name.to_owned()
        } else {
            "lib".to_owned()
        }
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue; // `berth_crate::…` and the like
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::C, D};`: the first segment of each entry.
            let group = group.split('}').next().unwrap_or("");
            for entry in group.split(',') {
                let name: String = entry
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(to_module(&name));
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(to_module(&name));
        }
    }
    found
}

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    let name = Path::new(first).file_stem().unwrap().to_string_lossy();
    name.into_owned()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn crate_paths_are_read_in_every_form() {
    let modules: BTreeSet<String> = ["body", "guest", "serve"].map(String::from).into();
    assert_eq!(
        crate_paths("use crate::{body::HeldBody, guest, Shared};", &modules),
        ["body", "guest", "lib"]
    );
    assert_eq!(
        crate_paths(
            "let x = crate::serve::f(crate::Config::default());",
            &modules
        ),
        ["serve", "lib"]
    );
    assert!(crate_paths("use berth_crate::x;", &modules).is_empty());
}
