//! One error model for what a client sees: an [`Error`] is a [`Code`] and a
//! message, and `From<Error> for tonic::Status` is the one place where it
//! becomes a gRPC status.
//!
//! User errors (a bad request, a missing permission, overload) keep their
//! precise message: it names the problem and what to do. Internal errors (I/O,
//! RocksDB, a lookup that panicked) are logged with their detail and an id,
//! and the client gets INTERNAL with what the server was doing and that id,
//! never the detail: it may hold paths and internal state, and it is the
//! operator who can act on it.

use std::fmt;

/// The outcomes a client can act on; each maps to one gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or names what does not exist.
    InvalidArgument,
    /// The request is fine, but the server's state does not allow it.
    FailedPrecondition,
    /// No valid API key.
    Unauthenticated,
    /// The key does not cover what was asked.
    PermissionDenied,
    /// Overload: retry with backoff, or elsewhere.
    ResourceExhausted,
    /// The client's deadline passed before the request was served.
    DeadlineExceeded,
    /// The server is stopping.
    Unavailable,
    /// The server failed; the log has the detail under the error's id.
    Internal,
}

impl Code {
    pub(crate) fn grpc(self) -> tonic::Code {
        match self {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::Internal => tonic::Code::Internal,
        }
    }
}

/// A failure to report to a client.
pub struct Error {
    code: Code,
    /// For user errors, the whole message; for internal ones, what the
    /// server was doing ("reading view `user_profile`").
    message: String,
    /// Internal errors only: the cause, for the log.
    detail: Option<anyhow::Error>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), detail: None }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidArgument, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Error {
        Error::new(Code::FailedPrecondition, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Error {
        Error::new(Code::Unauthenticated, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Error {
        Error::new(Code::PermissionDenied, message)
    }

    pub fn resource_exhausted(message: impl Into<String>) -> Error {
        Error::new(Code::ResourceExhausted, message)
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Error {
        Error::new(Code::DeadlineExceeded, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(Code::Unavailable, message)
    }

    /// The server failed while doing `what`; `detail` goes to the log only.
    pub fn internal(what: impl Into<String>, detail: impl Into<anyhow::Error>) -> Error {
        Error { code: Code::Internal, message: what.into(), detail: Some(detail.into()) }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail:#})")?;
        }
        Ok(())
    }
}

impl Error {
    /// What the client is told: the code and, for a user error, the whole
    /// message; an internal error is logged here with its detail under a
    /// new id, and the client gets what the server was doing and that id.
    /// Every protocol's answer is made from this.
    pub(crate) fn into_reply(self) -> (Code, String) {
        if self.code != Code::Internal {
            return (self.code, self.message);
        }
        let id = error_id();
        let detail = self.detail.as_ref().map(|d| format!("{d:#}")).unwrap_or_default();
        tracing::error!(error_id = %id, what = %self.message, detail = %detail, "Internal error.");
        (
            Code::Internal,
            format!(
                "internal error while {}; the server log has the detail under error id {id}",
                self.message
            ),
        )
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let (code, message) = e.into_reply();
        tonic::Status::new(code.grpc(), message)
    }
}

/// 16 hex digits, random: enough to find one line in a log.
fn error_id() -> String {
    let n = getrandom::u64().unwrap_or_else(|_| crate::now_micros() as u64);
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_keep_their_message_and_internal_ones_hide_the_detail() {
        let status: tonic::Status = Error::invalid_argument("entity key `user_id` is missing").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "entity key `user_id` is missing");

        let cause = anyhow::anyhow!("IO error: /var/lib/fstore/data/000123.sst: No such file or directory");
        let status: tonic::Status = Error::internal("reading view `user_profile`", cause).into();
        assert_eq!(status.code(), tonic::Code::Internal);
        let message = status.message();
        assert!(message.starts_with("internal error while reading view `user_profile`"), "{message}");
        assert!(!message.contains("sst") && !message.contains("/var/lib"), "detail leaked: {message}");
        let id = message.rsplit(' ').next().unwrap();
        assert_eq!(id.len(), 16, "{message}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{message}");
    }

    #[test]
    fn every_code_maps_to_its_grpc_code() {
        use tonic::Code as G;
        for (code, grpc) in [
            (Code::InvalidArgument, G::InvalidArgument),
            (Code::FailedPrecondition, G::FailedPrecondition),
            (Code::Unauthenticated, G::Unauthenticated),
            (Code::PermissionDenied, G::PermissionDenied),
            (Code::ResourceExhausted, G::ResourceExhausted),
            (Code::DeadlineExceeded, G::DeadlineExceeded),
            (Code::Unavailable, G::Unavailable),
            (Code::Internal, G::Internal),
        ] {
            assert_eq!(code.grpc(), grpc);
        }
    }
}
