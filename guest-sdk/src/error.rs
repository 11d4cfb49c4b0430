use std::fmt;

/// Why a record could not be processed.
///
/// A *rejected* record goes to the deployment's failure policy
/// (dead-letter, skip or stop); a *fatal* error stops the deployment on the
/// partition without consuming further. Any `std::error::Error` converts
/// into a rejection, so `?` works on parse errors and the like.
pub struct Error {
    pub(crate) fatal: bool,
    pub(crate) message: String,
}

impl Error {
    /// Rejects the current record with `message`.
    pub fn reject(message: impl Into<String>) -> Self {
        Error {
            fatal: false,
            message: message.into(),
        }
    }

    /// Stops the deployment: for problems no record can fix, such as bad
    /// configuration.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error {
            fatal: true,
            message: message.into(),
        }
    }

    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error::reject(e.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.fatal { "fatal" } else { "reject" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
