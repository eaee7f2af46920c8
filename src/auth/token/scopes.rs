//! `scope` parameters: what a client asks a token to grant.

use super::ResourceActions;

/// Parses `scope` values (`repository:team/app:pull,push`,
/// `registry:catalog:*`); each value may hold several scopes separated by
/// spaces, as the OAuth2 `POST /token` form sends them.
///
/// The type is what precedes the first `:` (a deprecated resource class such
/// as `repository(plugin)` is dropped), the actions follow the last `:`, and
/// the name is everything between, so `repository:host:5000/app:pull` names
/// `host:5000/app`. Actions on the same resource are merged, in the order
/// first seen. Malformed scopes are ignored.
pub fn parse_scopes(scopes: &[&str]) -> Vec<ResourceActions> {
    let mut merged: Vec<ResourceActions> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
        let Some(parsed) = parse_scope(scope) else {
            continue;
        };
        match merged
            .iter_mut()
            .find(|r| r.kind == parsed.kind && r.name == parsed.name)
        {
            Some(existing) => {
                for action in parsed.actions {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => merged.push(parsed),
        }
    }
    merged
}

fn parse_scope(scope: &str) -> Option<ResourceActions> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = match kind.split_once('(') {
        Some((kind, class)) if class.ends_with(')') => kind,
        Some(_) => return None,
        None => kind,
    };
    let kind_ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !kind_ok || name.is_empty() {
        return None;
    }
    let mut list: Vec<String> = Vec::new();
    for action in actions.split(',').filter(|a| !a.is_empty()) {
        if !action.bytes().all(|c| c.is_ascii_lowercase() || c == b'*') {
            return None;
        }
        if !list.iter().any(|a| a == action) {
            list.push(action.to_string());
        }
    }
    (!list.is_empty()).then(|| ResourceActions {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_like_docker_sends_them() {
        let parsed = parse_scopes(&[
            "repository:team/app:pull,push",
            "repository:localhost:5000/app:pull",
            "registry:catalog:*",
            "repository(plugin):team/plug:pull",
            "repository:team/app:pull repository:team/app:delete",
        ]);
        let expect = |kind: &str, name: &str, actions: &[&str]| ResourceActions {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        assert_eq!(
            parsed,
            [
                expect("repository", "team/app", &["pull", "push", "delete"]),
                expect("repository", "localhost:5000/app", &["pull"]),
                expect("registry", "catalog", &["*"]),
                expect("repository", "team/plug", &["pull"]),
            ]
        );
    }

    #[test]
    fn malformed_scopes_are_ignored() {
        assert!(parse_scopes(&[
            "",
            "repository",
            "repository:team/app",
            "repository:team/app:",
            ":team/app:pull",
            "repository::pull",
            "Repository:team/app:pull",
            "repository:team/app:PULL",
            "repository(plugin:team/app:pull",
        ])
        .is_empty());
        assert_eq!(
            parse_scopes(&["repository:team/app:pull,,pull"])[0].actions,
            ["pull"]
        );
    }
}
