/// The OCI / Docker registry error codes, with the HTTP status each one
/// answers with by default and its standard message. Every error response of
/// every layer is built from this one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    PaginationNumberInvalid,
    NotFound,
    Conflict,
    InvalidRequest,
    Unavailable,
    Unknown,
}

impl ErrorCode {
    /// (code, HTTP status, message)
    const fn entry(self) -> (&'static str, u16, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            TagInvalid => ("TAG_INVALID", 400, "manifest tag did not match URI"),
            Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            RangeInvalid => (
                "BLOB_UPLOAD_INVALID",
                416,
                "requested range not satisfiable",
            ),
            PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                400,
                "invalid number of results requested",
            ),
            NotFound => ("NOT_FOUND", 404, "no such endpoint"),
            Conflict => ("CONFLICT", 409, "already exists"),
            InvalidRequest => ("INVALID_REQUEST", 400, "invalid request"),
            Unavailable => ("UNAVAILABLE", 503, "service unavailable; retry shortly"),
            Unknown => ("UNKNOWN", 500, "unknown error"),
        }
    }

    pub const fn code(self) -> &'static str {
        self.entry().0
    }

    pub const fn status(self) -> u16 {
        self.entry().1
    }

    pub const fn message(self) -> &'static str {
        self.entry().2
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode::*;

    #[test]
    fn table_matches_spec() {
        assert_eq!(BlobUnknown.code(), "BLOB_UNKNOWN");
        assert_eq!(ManifestBlobUnknown.status(), 400);
        assert_eq!(NameUnknown.status(), 404);
        assert_eq!(RangeInvalid.status(), 416);
        assert_eq!(Unknown.status(), 500);
        assert_eq!(TooManyRequests.code(), "TOOMANYREQUESTS");
    }
}
