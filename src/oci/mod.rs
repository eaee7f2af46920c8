//! Pure OCI types: digests, repository names, references, media types, manifest
//! parsing and the OCI error-code table. No I/O lives here, so everything is
//! unit-testable and every higher layer shares one definition of "valid".

mod digest;
mod error;
mod manifest;
mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{media, Descriptor, ManifestError, ParsedManifest};
pub use name::{Reference, ReferenceError, RepoName, RepoNameError, Tag, TagError};
