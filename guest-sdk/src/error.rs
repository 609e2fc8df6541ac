//! The one error type a filter returns.

use std::fmt;

/// A filter's failure, as text for the relay's operator.
///
/// Any `std::error::Error` converts into it, so `?` works on regex, parse and serde errors:
///
/// ```
/// use promrelay_sdk::Error;
///
/// fn threshold(text: &str) -> Result<f64, Error> {
///     let value: f64 = text.parse()?;
///     if value < 0.0 {
///         return Err(Error::new(format!("threshold {value} is negative")));
///     }
///     Ok(value)
/// }
///
/// assert_eq!(threshold("2.5").unwrap(), 2.5);
/// assert_eq!(threshold("-1").unwrap_err().to_string(), "threshold -1 is negative");
/// assert!(threshold("x").is_err());
/// ```
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// This error with `context` in front: `"context: message"`.
    ///
    /// ```
    /// let error = promrelay_sdk::Error::new("bad regex").context("rules[2]");
    /// assert_eq!(error.to_string(), "rules[2]: bad regex");
    /// ```
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

// Like anyhow: `Error` itself is not `std::error::Error`, which lets every error type convert.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error::new(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}
