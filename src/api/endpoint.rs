//! One `/v2/` request as data: the path (split by `route`), the method and
//! the query parsed once into an [`Endpoint`] carrying its newtypes. What it
//! needs (`access`), what it leaves in the audit log (`audit`) and its label
//! in logs (`name`) are read from that one value.
//!
//! A request that does not parse is [`Refused`]; it still says what access
//! its repository would have needed, because the caller's right to learn
//! that answer is checked first (a malformed name needs nothing: its
//! NAME_INVALID comes out right after identification).

use axum::http::Method;

use super::error::ApiError;
use super::route::V2Route;
use super::v2::Params;
use crate::metadata::Action;
use crate::oci::{Digest, ErrorCode, Reference, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Catalog,
    ListTags {
        repo: RepoName,
    },
    /// GET (`with_body`) or HEAD.
    GetManifest {
        repo: RepoName,
        reference: Reference,
        with_body: bool,
    },
    PutManifest {
        repo: RepoName,
        reference: Reference,
    },
    DeleteManifest {
        repo: RepoName,
        reference: Reference,
    },
    HeadBlob {
        repo: RepoName,
        digest: Digest,
    },
    GetBlob {
        repo: RepoName,
        digest: Digest,
    },
    DeleteBlob {
        repo: RepoName,
        digest: Digest,
    },
    /// `POST /blobs/uploads/`: a mount of a digest (with its `from`, when
    /// it names a repository), a monolithic upload of `digest`, or a new
    /// session. A mount ignores `digest`.
    StartUpload {
        repo: RepoName,
        mount: Option<(Digest, Option<RepoName>)>,
        digest: Option<Digest>,
    },
    UploadStatus {
        repo: RepoName,
        id: String,
    },
    UploadChunk {
        repo: RepoName,
        id: String,
    },
    FinishUpload {
        repo: RepoName,
        id: String,
        digest: Digest,
    },
    CancelUpload {
        repo: RepoName,
        id: String,
    },
    Referrers {
        repo: RepoName,
        digest: Digest,
    },
}

/// An action on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub repo: RepoName,
    pub action: Action,
}

/// What authorization checks before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    /// Refused (401/403) unless granted. `None`: no repository-level check
    /// (the catalog filters its answer per caller instead).
    pub required: Option<Permission>,
    /// Checked but never refused: a mount's `from`, kept only if the caller
    /// may pull from it.
    pub mount_from: Option<RepoName>,
}

/// A request that names no endpoint: its answer, and the access its
/// repository needs before that answer is given.
#[derive(Debug)]
pub struct Refused {
    pub error: Box<ApiError>,
    pub required: Option<Permission>,
}

/// One audit record: (action, repository, reference).
pub type Audit<'a> = (&'static str, &'a RepoName, String);

impl Endpoint {
    /// Parses a recognised path, its method and query into an endpoint.
    pub fn parse(
        route: V2Route<'_>,
        method: &Method,
        params: &Params,
    ) -> Result<Endpoint, Refused> {
        use V2Route::*;
        match route {
            Catalog if *method == Method::GET => Ok(Endpoint::Catalog),
            Catalog => Err(unsupported(method).into()),
            Tags { name } => {
                only(method, &Method::GET, name, Action::Pull)?;
                Ok(Endpoint::ListTags { repo: repo(name)? })
            }
            Referrers { name, digest: d } => {
                only(method, &Method::GET, name, Action::Pull)?;
                let repo = repo(name)?;
                let digest = digest(d).map_err(|e| e.needing(&repo, Action::Pull))?;
                Ok(Endpoint::Referrers { repo, digest })
            }
            Manifest { name, reference } => manifest(repo(name)?, reference, method),
            Blob { name, digest } => blob(repo(name)?, digest, method),
            Upload { name, id: None } => {
                only(method, &Method::POST, name, Action::Push)?;
                start_upload(repo(name)?, params)
            }
            Upload { name, id: Some(id) } => upload(repo(name)?, id, method, params),
        }
    }

    /// What the caller must (and, for a mount's source, may) be allowed.
    pub fn access(&self) -> Access {
        use Endpoint::*;
        let required = |repo: &RepoName, action| {
            Some(Permission {
                repo: repo.clone(),
                action,
            })
        };
        match self {
            Catalog => Access::default(),
            ListTags { repo }
            | Referrers { repo, .. }
            | HeadBlob { repo, .. }
            | GetManifest { repo, .. }
            | GetBlob { repo, .. } => Access {
                required: required(repo, Action::Pull),
                mount_from: None,
            },
            DeleteManifest { repo, .. } | DeleteBlob { repo, .. } => Access {
                required: required(repo, Action::Delete),
                mount_from: None,
            },
            PutManifest { repo, .. } => Access {
                required: required(repo, Action::Push),
                mount_from: None,
            },
            StartUpload { repo, mount, .. } => Access {
                required: required(repo, Action::Push),
                mount_from: mount.as_ref().and_then(|(_, from)| from.clone()),
            },
            // Every step of an upload, even its status or cancellation, is pushing.
            UploadStatus { repo, .. }
            | UploadChunk { repo, .. }
            | FinishUpload { repo, .. }
            | CancelUpload { repo, .. } => Access {
                required: required(repo, Action::Push),
                mount_from: None,
            },
        }
    }

    /// Drops a mount's `from` the caller may not read: the mount then
    /// looks only where the caller may see.
    pub fn forget_mount_from(&mut self) {
        if let Endpoint::StartUpload {
            mount: Some((_, from)),
            ..
        } = self
        {
            *from = None;
        }
    }

    /// The audit record of a successful request, if it leaves one.
    pub fn audit(&self) -> Option<Audit<'_>> {
        use Endpoint::*;
        match self {
            GetManifest {
                repo,
                reference,
                with_body: true,
            } => Some(("pull", repo, reference.to_string())),
            PutManifest { repo, reference } => Some(("push", repo, reference.to_string())),
            DeleteManifest { repo, reference } => Some(("delete", repo, reference.to_string())),
            DeleteBlob { repo, digest } => Some(("delete", repo, digest.to_string())),
            _ => None,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn name(&self) -> &'static str {
        use Endpoint::*;
        match self {
            Catalog => "catalog",
            ListTags { .. } => "tags.list",
            GetManifest {
                with_body: true, ..
            } => "manifest.get",
            GetManifest { .. } => "manifest.head",
            PutManifest { .. } => "manifest.put",
            DeleteManifest { .. } => "manifest.delete",
            HeadBlob { .. } => "blob.head",
            GetBlob { .. } => "blob.get",
            DeleteBlob { .. } => "blob.delete",
            StartUpload { .. } => "upload.start",
            UploadStatus { .. } => "upload.status",
            UploadChunk { .. } => "upload.chunk",
            FinishUpload { .. } => "upload.finish",
            CancelUpload { .. } => "upload.cancel",
            Referrers { .. } => "referrers",
        }
    }
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused {
            error: Box::new(error),
            required: None,
        }
    }
}

impl ApiError {
    /// This answer, given once the caller may `action` on `repo`.
    fn needing(self, repo: &RepoName, action: Action) -> Refused {
        Refused {
            error: Box::new(self),
            required: Some(Permission {
                repo: repo.clone(),
                action,
            }),
        }
    }
}

/// The action a manifest or blob method needs; any other method needs
/// push before it is told it is unsupported.
fn action_of(method: &Method) -> Action {
    match *method {
        Method::DELETE => Action::Delete,
        Method::GET | Method::HEAD => Action::Pull,
        _ => Action::Push,
    }
}

fn manifest(repo: RepoName, raw: &str, method: &Method) -> Result<Endpoint, Refused> {
    let needs = |e: ApiError| e.needing(&repo, action_of(method));
    let reference = reference(raw, method).map_err(needs)?;
    Ok(match *method {
        Method::GET | Method::HEAD => Endpoint::GetManifest {
            with_body: *method == Method::GET,
            repo,
            reference,
        },
        Method::PUT => Endpoint::PutManifest { repo, reference },
        Method::DELETE => Endpoint::DeleteManifest { repo, reference },
        _ => return Err(needs(unsupported(method))),
    })
}

fn blob(repo: RepoName, raw: &str, method: &Method) -> Result<Endpoint, Refused> {
    let needs = |e: ApiError| e.needing(&repo, action_of(method));
    let digest = digest(raw).map_err(needs)?;
    Ok(match *method {
        Method::GET => Endpoint::GetBlob { repo, digest },
        Method::HEAD => Endpoint::HeadBlob { repo, digest },
        Method::DELETE => Endpoint::DeleteBlob { repo, digest },
        _ => return Err(needs(unsupported(method))),
    })
}

/// The mount's `from` names no repository when it does not parse: the
/// mount falls back to an upload, as the spec asks, instead of failing.
fn start_upload(repo: RepoName, params: &Params) -> Result<Endpoint, Refused> {
    let needs = |e: ApiError| e.needing(&repo, Action::Push);
    let (mount, digest) = match (params.mount.as_deref(), params.digest.as_deref()) {
        (Some(mount), _) => {
            let from = params.from.as_deref().and_then(|f| f.parse().ok());
            (Some((self::digest(mount).map_err(needs)?, from)), None)
        }
        (None, Some(d)) => (None, Some(self::digest(d).map_err(needs)?)),
        (None, None) => (None, None),
    };
    Ok(Endpoint::StartUpload {
        repo,
        mount,
        digest,
    })
}

fn upload(repo: RepoName, id: &str, method: &Method, params: &Params) -> Result<Endpoint, Refused> {
    let id = id.to_string();
    Ok(match *method {
        Method::GET => Endpoint::UploadStatus { repo, id },
        Method::PATCH => Endpoint::UploadChunk { repo, id },
        Method::PUT => {
            let needs = |e: ApiError| e.needing(&repo, Action::Push);
            let Some(d) = params.digest.as_deref() else {
                return Err(needs(ApiError::new(
                    ErrorCode::DigestInvalid,
                    "the closing PUT needs a digest query parameter",
                )));
            };
            let digest = digest(d).map_err(needs)?;
            Endpoint::FinishUpload { repo, id, digest }
        }
        Method::DELETE => Endpoint::CancelUpload { repo, id },
        _ => return Err(unsupported(method).needing(&repo, Action::Push)),
    })
}

/// Refuses any method but `allowed` before the name is validated; the
/// refusal needs `action` on the repository when the name is one.
fn only(method: &Method, allowed: &Method, name: &str, action: Action) -> Result<(), Refused> {
    if method == allowed {
        return Ok(());
    }
    let error = unsupported(method);
    Err(match name.parse::<RepoName>() {
        Ok(repo) => error.needing(&repo, action),
        Err(_) => error.into(),
    })
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("{method} is not supported here"),
    )
}

fn repo(raw: &str) -> Result<RepoName, ApiError> {
    raw.parse().map_err(|e: crate::oci::RepoNameError| {
        ApiError::new(ErrorCode::NameInvalid, e.to_string())
    })
}

fn digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::new(ErrorCode::DigestInvalid, format!("{raw:?}: {e}"))
    })
}

/// A reference that is no tag can name no manifest: reading or deleting it
/// answers 404 like any unknown manifest; only storing under it is invalid.
fn reference(raw: &str, method: &Method) -> Result<Reference, ApiError> {
    Reference::parse(raw).map_err(|e| match e {
        crate::oci::ReferenceError::Digest(d) => {
            ApiError::new(ErrorCode::DigestInvalid, format!("{raw:?}: {d}"))
        }
        crate::oci::ReferenceError::Tag(t) if *method == Method::PUT => {
            ApiError::new(ErrorCode::TagInvalid, format!("{raw:?}: {t}"))
        }
        crate::oci::ReferenceError::Tag(t) => {
            ApiError::new(ErrorCode::ManifestUnknown, format!("{raw:?}: {t}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access an endpoint declares: (repository, action), as `required`.
    fn required_access(route: &V2Route<'_>, method: &Method) -> Option<(String, Action)> {
        let required = match Endpoint::parse(route.clone(), method, &Params::default()) {
            Ok(endpoint) => endpoint.access().required,
            Err(refused) => refused.required,
        };
        required.map(|p| (p.repo.to_string(), p.action))
    }

    #[test]
    fn every_endpoint_declares_its_access() {
        use crate::metadata::Action::*;
        use V2Route::*;
        let a = || Some(("a".to_string(), Pull));
        let with = |action| Some(("a".to_string(), action));
        let m = |name, reference| Manifest { name, reference };
        assert_eq!(required_access(&m("a", "t"), &Method::GET), a());
        assert_eq!(required_access(&m("a", "t"), &Method::HEAD), a());
        assert_eq!(required_access(&m("a", "t"), &Method::PUT), with(Push));
        assert_eq!(required_access(&m("a", "t"), &Method::DELETE), with(Delete));
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let b = Blob { name: "a", digest };
        assert_eq!(required_access(&b, &Method::DELETE), with(Delete));
        assert_eq!(required_access(&b, &Method::GET), a());
        let u = Upload {
            name: "a",
            id: Some("x"),
        };
        assert_eq!(required_access(&u, &Method::GET), with(Push));
        assert_eq!(required_access(&Tags { name: "a" }, &Method::GET), a());
        assert_eq!(required_access(&Catalog, &Method::GET), None);
    }

    #[test]
    fn refusals_keep_the_access_they_answer_behind() {
        use crate::metadata::Action::*;
        use V2Route::*;
        let with = |action| Some(("a".to_string(), action));
        // A bad reference or an unknown method is told only to who may act.
        let bad_tag = Manifest {
            name: "a",
            reference: "-bad",
        };
        assert_eq!(required_access(&bad_tag, &Method::PUT), with(Push));
        assert_eq!(required_access(&bad_tag, &Method::GET), with(Pull));
        assert_eq!(
            required_access(&Tags { name: "a" }, &Method::POST),
            with(Pull)
        );
        let open = Upload {
            name: "a",
            id: None,
        };
        assert_eq!(required_access(&open, &Method::GET), with(Push));
        // A malformed name needs nothing: NAME_INVALID comes out first.
        assert_eq!(required_access(&Tags { name: "A" }, &Method::GET), None);
        assert_eq!(required_access(&Catalog, &Method::POST), None);
    }

    #[test]
    fn endpoints_name_their_audit_and_label() {
        let repo: RepoName = "a".parse().unwrap();
        let reference = Reference::parse("t").unwrap();
        let get = Endpoint::GetManifest {
            repo: repo.clone(),
            reference: reference.clone(),
            with_body: true,
        };
        assert_eq!(get.audit(), Some(("pull", &repo, "t".to_string())));
        assert_eq!(get.name(), "manifest.get");
        let head = Endpoint::GetManifest {
            repo: repo.clone(),
            reference,
            with_body: false,
        };
        assert_eq!(head.audit(), None);
        assert_eq!(head.name(), "manifest.head");
    }
}
