//! Deriving a task's title and branch from its prompt when the caller gives none.

/// Longest derived title, prefix included (as in the system we replace).
pub const MAX_DERIVED_TITLE: usize = 62;
const MAX_SLUG: usize = 40;

/// The conventional-commit kind a prompt reads as.
fn kind_of(prompt: &str) -> &'static str {
    let p = prompt.to_lowercase();
    let has = |w: &str| p.split(|c: char| !c.is_alphanumeric()).any(|t| t == w);
    if has("fix") || has("bug") || has("broken") || has("crash") || has("error") {
        "fix"
    } else if has("docs") || has("document") || has("readme") || has("documentation") {
        "docs"
    } else if has("refactor") || has("cleanup") || has("rename") || has("simplify") {
        "refactor"
    } else {
        "feat"
    }
}

/// `kind: first line of the prompt`, whitespace collapsed, cut at a word boundary to [`MAX_DERIVED_TITLE`].
pub fn derive_title(prompt: &str) -> String {
    let kind = kind_of(prompt);
    let line = prompt.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("untitled task");
    let words: Vec<&str> = line.split_whitespace().collect();
    let budget = MAX_DERIVED_TITLE - kind.len() - 2;
    let mut body = String::new();
    for w in words {
        let extra = if body.is_empty() { w.chars().count() } else { w.chars().count() + 1 };
        if body.chars().count() + extra > budget {
            if body.is_empty() {
                body = w.chars().take(budget).collect();
            }
            break;
        }
        if !body.is_empty() {
            body.push(' ');
        }
        body.push_str(w);
    }
    let body: String = body.chars().filter(|c| !c.is_control()).collect();
    let mut chars = body.chars();
    let body = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
        None => "untitled task".to_owned(),
    };
    format!("{kind}: {body}")
}

/// `kind/slug-of-the-title` using only `[a-z0-9-]`, so it is always a valid branch name.
pub fn derive_branch(title: &str) -> String {
    let (kind, rest) = match title.split_once(": ") {
        Some((k, r)) if ["feat", "fix", "docs", "refactor"].contains(&k) => (k, r),
        _ => ("feat", title),
    };
    let mut slug = String::new();
    for c in rest.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= MAX_SLUG {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "task" } else { slug };
    format!("{kind}/{slug}")
}

/// `base`, or `base-2`, `base-3`, … : the first candidate `taken` says is free.
pub fn unique_branch(base: &str, mut taken: impl FnMut(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|b| !taken(b)).unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::validate;

    #[test]
    fn titles_follow_the_prompt() {
        assert_eq!(derive_title("Add a login page with GitHub OAuth"), "feat: add a login page with GitHub OAuth");
        assert_eq!(derive_title("\n\n  Fix the crash on empty input\nmore"), "fix: fix the crash on empty input");
        assert_eq!(derive_title("Update the README"), "docs: update the README");
        let long = derive_title(&"word ".repeat(100));
        assert!(long.chars().count() <= MAX_DERIVED_TITLE, "{long}");
        assert!(!long.ends_with(' '));
        assert_eq!(derive_title("   "), "feat: untitled task");
        assert!(derive_title(&"x".repeat(500)).chars().count() <= MAX_DERIVED_TITLE);
    }

    #[test]
    fn branches_are_sanitized_and_valid() {
        let cases = [
            ("feat: add a login page", "feat/add-a-login-page"),
            ("fix: ünïcode & spaces!!", "fix/n-code-spaces"),
            ("weird title ..//~^", "feat/weird-title"),
            ("docs: ", "docs/task"),
        ];
        for (title, want) in cases {
            let b = derive_branch(title);
            assert_eq!(b, want);
            validate::branch(&b).unwrap();
        }
        let b = derive_branch(&format!("feat: {}", "abc ".repeat(50)));
        assert!(b.len() <= 5 + MAX_SLUG, "{b}");
        validate::branch(&b).unwrap();
    }

    #[test]
    fn unique_branch_appends_a_counter() {
        let taken = ["feat/x", "feat/x-2"];
        assert_eq!(unique_branch("feat/x", |b| taken.contains(&b)), "feat/x-3");
        assert_eq!(unique_branch("feat/y", |b| taken.contains(&b)), "feat/y");
    }
}
