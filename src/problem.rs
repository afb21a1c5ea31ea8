//! A problem found in a file (configuration, partners, agreements, schemas): what `check`
//! prints and what a refused reload reports. A leaf every other module may use.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with the configuration, tied to the file it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub message: String,
    /// What to do about it, when that is not obvious from the message.
    pub fix: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}
