//! The one error type of the crate. Every failure a user can cause is a variant here, with
//! enough context (file, tensor, field, shapes) to act on it.

use std::path::PathBuf;

/// Result alias used across bertrt.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// config.json could not be parsed, or a field has an unsupported value.
    #[error("config: field `{field}`: {message}")]
    Config {
        /// The config.json field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A checkpoint file is malformed or not usable.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A tensor the model needs is not in the checkpoint.
    #[error("missing tensor `{name}` (looked for: {tried})")]
    MissingTensor {
        /// The tensor name (relative to the module prefix).
        name: String,
        /// Every full name that was tried.
        tried: String,
    },

    /// A tensor has a different shape than the config implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The full tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape stored in the checkpoint.
        found: Vec<usize>,
    },

    /// A tensor holds values the model cannot run with (NaN, infinities).
    #[error("tensor `{name}` holds a value that is not a finite number ({message}): the checkpoint is damaged")]
    BadValues {
        /// The tensor.
        name: String,
        /// What and where.
        message: String,
    },

    /// The input batch is not valid for this model.
    #[error("invalid input: {0}")]
    Input(String),

    /// The requested head, task, device or option is not available.
    #[error("{0}")]
    Unsupported(String),

    /// A bug in bertrt itself (a plan or lowering that breaks its own rules); please
    /// report it.
    #[error("internal error (a bertrt bug): {0}")]
    Internal(String),

    /// The CUDA driver, a CUDA library or a kernel reported a failure.
    #[error("CUDA: {0}")]
    Cuda(String),

    /// Fetching the default model failed.
    #[error("model download: {0}")]
    Fetch(String),
}

/// A copy of the error, of the same kind and message (an I/O error's source is rebuilt
/// from its kind and text), so that one failure can answer several requests.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Config { field, message } => Error::Config {
                field: field.clone(),
                message: message.clone(),
            },
            Error::Checkpoint { path, message } => Error::Checkpoint {
                path: path.clone(),
                message: message.clone(),
            },
            Error::MissingTensor { name, tried } => Error::MissingTensor {
                name: name.clone(),
                tried: tried.clone(),
            },
            Error::TensorShape {
                name,
                expected,
                found,
            } => Error::TensorShape {
                name: name.clone(),
                expected: expected.clone(),
                found: found.clone(),
            },
            Error::BadValues { name, message } => Error::BadValues {
                name: name.clone(),
                message: message.clone(),
            },
            Error::Input(m) => Error::Input(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            Error::Cuda(m) => Error::Cuda(m.clone()),
            Error::Fetch(m) => Error::Fetch(m.clone()),
        }
    }
}

/// Writes a message line to stderr, ignoring a closed or failing stderr (diagnostics
/// must never take the process down).
pub(crate) fn note(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}
