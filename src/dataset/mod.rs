//! Training examples: OpenAI chat JSONL per split, promotion, edits, dedupe, checks, splits and exports.

mod check;
mod example;
mod formats;
mod heal;
mod measure;
mod split;
mod stats;
mod store;
mod text;

pub use check::{Check, Finding, Kind, NEAR, Severity, check, shape_problems};
pub use example::{Example, Message, Meta, Origin, new_id};
pub use formats::{Format, LengthRule, export, import, import_checked, import_for};
pub use heal::{Healing, heal};
pub use measure::{Context, Measure, Report};
pub use split::{SplitPlan, moves, planned_split, resplit};
pub use stats::{SplitStats, Stats, stats};
pub use store::{Dataset, Entry, Malformed, parse_lines};
pub use text::{in_prompt, jaccard, normalized, shingles};

use std::path::PathBuf;

/// The three files a dataset is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.jsonl",
            Split::Valid => "valid.jsonl",
            Split::Test => "test.jsonl",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The next split in train → valid → test → train order (the dataset view's move key).
    pub fn next(self) -> Split {
        match self {
            Split::Train => Split::Valid,
            Split::Valid => Split::Test,
            Split::Test => Split::Train,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record in a file is wrong: `where_` is `file:line` (or `file[index]` in a JSON array).
    #[error("{where_}: {message}")]
    Invalid { where_: String, message: String },
    /// An operation the dataset refuses (a duplicate, an unknown id …).
    #[error("{0}")]
    Refused(String),
}

impl DatasetError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

impl From<crate::workspace::WorkspaceError> for DatasetError {
    fn from(e: crate::workspace::WorkspaceError) -> Self {
        match e {
            crate::workspace::WorkspaceError::Io { path, source } => Self::Io { path, source },
            other => Self::Refused(other.to_string()),
        }
    }
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// Tokens of one whole example in the measuring model (see `Measure`), or why it cannot be counted.
pub type CountTokens<'a> = &'a dyn Fn(&Example) -> std::result::Result<usize, String>;
