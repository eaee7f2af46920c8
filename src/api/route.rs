//! Splits a `/v2/` path into its raw repository name and route (parsed
//! further, with the method and query, by `endpoint`). Names may have
//! any number of components, so routes are recognised from the right-hand end.

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
    use super::{parse, V2Route::*};

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
    fn rejects_unknown_paths() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("a"), None);
        assert_eq!(parse("a/b"), None);
        assert_eq!(parse("a/other/x"), None);
        assert_eq!(parse("manifests/x"), None);
    }
}
