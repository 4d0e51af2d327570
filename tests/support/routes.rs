//! The routes src/http/ registers, read from its source: tests that must cover every route compare their own table
//! with this list, so a new route fails them until it is listed.

use std::collections::BTreeSet;
use std::path::Path;

/// Files whose routes are mounted at the root (`configure` in src/http/mod.rs); every other file's are under `/v1`.
const ROOT_FILES: &[&str] = &["ops.rs", "webapp.rs"];

/// Every `(METHOD, full path)` registered in src/http/: `.route(path, web::get()|post()|...)` (with the `const`
/// path prefixes a file defines expanded) and `web::resource("path")...route(web::post()...)`.
pub fn registered() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"), &mut files);
    let mut out = BTreeSet::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = if ROOT_FILES.contains(&file.as_str()) { "" } else { "/v1" };
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let consts: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("const "))
            .filter_map(|l| {
                let (name, rest) = l.split_once(": &str = \"")?;
                Some((name.to_owned(), rest.split('"').next()?.to_owned()))
            })
            .collect();
        for call in text.split(".route(").skip(1) {
            let Some((target, rest)) = call.split_once(", web::") else { continue };
            let method = rest.split("()").next().unwrap_or_default().to_uppercase();
            let target = target.trim().trim_start_matches("&format!(").trim_end_matches(')');
            let mut route = match consts.iter().find(|(n, _)| n == target) {
                Some((_, v)) => v.clone(),
                None => target.trim_matches('"').to_owned(),
            };
            for (name, value) in &consts {
                route = route.replace(&format!("{{{name}}}"), value);
            }
            out.insert((method, format!("{prefix}{}", route.replace("{{", "{").replace("}}", "}"))));
        }
        for res in text.split("web::resource(\"").skip(1) {
            let Some((route, rest)) = res.split_once('"') else { continue };
            let rest = rest.split("web::resource(").next().unwrap_or(rest);
            for call in rest.split(".route(web::").skip(1) {
                let method = call.split("()").next().unwrap_or_default().to_uppercase();
                out.insert((method, format!("{prefix}{route}")));
            }
        }
    }
    out
}

/// The `.rs` files under `dir`, in its subdirectories too (a module split into a folder keeps its routes listed).
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
