//! Typed workspace errors: every validation failure names the file, line and key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A value in a file is wrong; `line` and `col` are 1-based.
    #[error("{}:{line}:{col}: {key}: {message}", file.display())]
    Invalid { file: PathBuf, line: usize, col: usize, key: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An in-memory edit that would make the workspace invalid.
    #[error("{0}")]
    Rejected(String),
    /// An edit the in-memory document cannot express (e.g. lanes written inline).
    #[error("{}: cannot save: {message}", file.display())]
    Unsavable { file: PathBuf, message: String },
}

impl WorkspaceError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// 1-based line and column of a byte offset in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Builds `Invalid` errors for one file whose source text is known.
pub struct Locator<'a> {
    pub file: &'a std::path::Path,
    pub src: &'a str,
}

impl Locator<'_> {
    pub fn at(&self, offset: usize, key: impl Into<String>, message: impl Into<String>) -> WorkspaceError {
        let (line, col) = line_col(self.src, offset);
        WorkspaceError::Invalid { file: self.file.to_path_buf(), line, col, key: key.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
    }
}
