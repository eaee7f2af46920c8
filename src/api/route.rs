//! Splits a `/v2/` path into repository name and endpoint. Names may have
//! any number of components, so routes are recognised from the right-hand end.

use axum::http::Method;

use crate::metadata::Action;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route<'a> {
    Catalog,
    Tags {
        name: &'a str,
    },
    Manifest {
        name: &'a str,
        reference: &'a str,
    },
    Blob {
        name: &'a str,
        digest: &'a str,
    },
    /// `id` is `None` for `/blobs/uploads/` (opening a session).
    Upload {
        name: &'a str,
        id: Option<&'a str>,
    },
    Referrers {
        name: &'a str,
        digest: &'a str,
    },
}

/// The access an endpoint needs: an action on a repository (by its raw
/// name; the handler validates it). `None`: no repository-level check (the
/// catalog filters its answer per caller instead).
pub fn required_access<'a>(route: &V2Route<'a>, method: &Method) -> Option<(&'a str, Action)> {
    use V2Route::*;
    let write = |name| match *method {
        Method::DELETE => Some((name, Action::Delete)),
        Method::GET | Method::HEAD => Some((name, Action::Pull)),
        _ => Some((name, Action::Push)),
    };
    match *route {
        Catalog => None,
        Tags { name } | Referrers { name, .. } => Some((name, Action::Pull)),
        Manifest { name, .. } | Blob { name, .. } => write(name),
        // Every step of an upload, even its status or cancellation, is pushing.
        Upload { name, .. } => Some((name, Action::Push)),
    }
}

/// `path` is what follows `/v2/`.
pub fn parse(path: &str) -> Option<V2Route<'_>> {
    if path == "_catalog" {
        return Some(V2Route::Catalog);
    }
    let (rest, last) = path.rsplit_once('/')?;
    if let Some(name) = rest.strip_suffix("/tags").filter(|_| last == "list") {
        return Some(V2Route::Tags { name });
    }
    if last == "uploads" {
        if let Some(name) = rest.strip_suffix("/blobs") {
            return Some(V2Route::Upload { name, id: None });
        }
    }
    let (name, kind) = rest.rsplit_once('/')?;
    match kind {
        "manifests" => Some(V2Route::Manifest {
            name,
            reference: last,
        }),
        "blobs" => Some(V2Route::Blob { name, digest: last }),
        "referrers" => Some(V2Route::Referrers { name, digest: last }),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            let id = (!last.is_empty()).then_some(last);
            Some(V2Route::Upload { name, id })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, required_access, Method, V2Route::*};

    #[test]
    fn recognises_every_endpoint() {
        assert_eq!(parse("_catalog"), Some(Catalog));
        assert_eq!(parse("a/b/tags/list"), Some(Tags { name: "a/b" }));
        assert_eq!(
            parse("a/manifests/latest"),
            Some(Manifest {
                name: "a",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("a/b/c/d/e/f/g/h/manifests/v1"),
            Some(Manifest {
                name: "a/b/c/d/e/f/g/h",
                reference: "v1"
            })
        );
        assert_eq!(
            parse("a/blobs/sha256:x"),
            Some(Blob {
                name: "a",
                digest: "sha256:x"
            })
        );
        assert_eq!(
            parse("a/blobs/uploads/"),
            Some(Upload {
                name: "a",
                id: None
            })
        );
        assert_eq!(
            parse("a/blobs/uploads"),
            Some(Upload {
                name: "a",
                id: None
            })
        );
        assert_eq!(
            parse("a/blobs/uploads/123"),
            Some(Upload {
                name: "a",
                id: Some("123")
            })
        );
        assert_eq!(
            parse("a/referrers/sha256:x"),
            Some(Referrers {
                name: "a",
                digest: "sha256:x"
            })
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            parse("blobs/manifests/v1"),
            Some(Manifest {
                name: "blobs",
                reference: "v1"
            })
        );
        assert_eq!(
            parse("x/manifests/y/tags/list"),
            Some(Tags {
                name: "x/manifests/y"
            })
        );
        assert_eq!(
            parse("tags/blobs/uploads/"),
            Some(Upload {
                name: "tags",
                id: None
            })
        );
    }

    #[test]
    fn every_endpoint_declares_its_access() {
        use crate::metadata::Action::*;
        let m = |name, reference| Manifest { name, reference };
        assert_eq!(
            required_access(&m("a", "t"), &Method::GET),
            Some(("a", Pull))
        );
        assert_eq!(
            required_access(&m("a", "t"), &Method::HEAD),
            Some(("a", Pull))
        );
        assert_eq!(
            required_access(&m("a", "t"), &Method::PUT),
            Some(("a", Push))
        );
        assert_eq!(
            required_access(&m("a", "t"), &Method::DELETE),
            Some(("a", Delete))
        );
        let b = Blob {
            name: "a",
            digest: "d",
        };
        assert_eq!(required_access(&b, &Method::DELETE), Some(("a", Delete)));
        assert_eq!(required_access(&b, &Method::GET), Some(("a", Pull)));
        let u = Upload {
            name: "a",
            id: Some("x"),
        };
        assert_eq!(required_access(&u, &Method::GET), Some(("a", Push)));
        assert_eq!(
            required_access(&Tags { name: "a" }, &Method::GET),
            Some(("a", Pull))
        );
        assert_eq!(required_access(&Catalog, &Method::GET), None);
    }

    #[test]
    fn rejects_unknown_paths() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("a"), None);
        assert_eq!(parse("a/b"), None);
        assert_eq!(parse("a/other/x"), None);
        assert_eq!(parse("manifests/x"), None);
    }
}
