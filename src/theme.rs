//! Colour themes from `themes/*.toml`: built-in dark and light, or a user file; bad colours are located errors.

use std::path::{Path, PathBuf};

use ratatui::style::Color;
use serde::Deserialize;
use toml::Spanned;

use crate::workspace::{WorkspaceError, line_col};

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub muted: Color,
    pub accent: Color,
    pub border: Color,
    pub border_focus: Color,
    pub title: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub selection: Color,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    name: String,
    fg: Spanned<String>,
    muted: Spanned<String>,
    accent: Spanned<String>,
    border: Spanned<String>,
    border_focus: Spanned<String>,
    title: Spanned<String>,
    ok: Spanned<String>,
    warn: Spanned<String>,
    error: Spanned<String>,
    selection: Spanned<String>,
}

const BUILTIN: [(&str, &str); 2] =
    [("dark", include_str!("../themes/dark.toml")), ("light", include_str!("../themes/light.toml"))];

impl Default for Theme {
    fn default() -> Self {
        Self::parse(Path::new("themes/dark.toml"), BUILTIN[0].1)
            .unwrap_or_else(|_| unreachable!("built-in theme parses"))
    }
}

impl Theme {
    /// `spec` is a theme name (looked up in `<workspace>/themes`, the user's config dir, then the built-ins)
    /// or a path to a .toml file.
    pub fn load(spec: &str, workspace_root: &Path) -> Result<Theme, WorkspaceError> {
        let as_path = PathBuf::from(spec);
        if spec.ends_with(".toml") || spec.contains('/') {
            return Self::read(&as_path);
        }
        let mut candidates = vec![workspace_root.join("themes").join(format!("{spec}.toml"))];
        if let Some(cfg) = dirs::config_dir() {
            candidates.push(cfg.join("tunebench/themes").join(format!("{spec}.toml")));
        }
        if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
            return Self::read(&found);
        }
        match BUILTIN.iter().find(|(n, _)| *n == spec) {
            Some((n, src)) => Self::parse(Path::new(&format!("themes/{n}.toml")), src),
            None => Err(WorkspaceError::Rejected(format!(
                "no theme `{spec}` (built-in: dark, light; or give a path to a .toml file)"
            ))),
        }
    }

    /// The theme to use: `--theme` if given, else the workspace's `theme` (a path there is relative to the
    /// workspace), else dark. A bad workspace theme is reported at its line in workspace.toml.
    pub fn choose(cli: Option<&str>, ws: &crate::workspace::Workspace) -> Result<Theme, WorkspaceError> {
        if let Some(spec) = cli {
            return Self::load(spec, &ws.root);
        }
        let Some(spec) = ws.theme.as_deref() else { return Ok(Theme::default()) };
        let spec = if spec.ends_with(".toml") || spec.contains('/') {
            ws.resolve(spec).to_string_lossy().into_owned()
        } else {
            spec.to_string()
        };
        Self::load(&spec, &ws.root).map_err(|e| WorkspaceError::Invalid {
            file: ws.file.clone(),
            line: ws.theme_line,
            col: 1,
            key: "theme".into(),
            message: e.to_string(),
        })
    }

    fn read(path: &Path) -> Result<Theme, WorkspaceError> {
        let src = std::fs::read_to_string(path).map_err(|e| WorkspaceError::io(path, e))?;
        Self::parse(path, &src)
    }

    pub fn parse(file: &Path, src: &str) -> Result<Theme, WorkspaceError> {
        let invalid = |offset: usize, key: &str, message: String| {
            let (line, col) = line_col(src, offset);
            WorkspaceError::Invalid { file: file.to_path_buf(), line, col, key: key.into(), message }
        };
        let raw: RawTheme = toml::from_str(src)
            .map_err(|e| invalid(e.span().map_or(0, |s| s.start), "(theme)", e.message().trim().to_string()))?;
        let colour = |key: &str, v: &Spanned<String>| {
            v.get_ref().parse::<Color>().map_err(|_| {
                invalid(
                    v.span().start,
                    key,
                    format!("`{}` is not a colour (#rrggbb, a colour name or 0-255)", v.get_ref()),
                )
            })
        };
        Ok(Theme {
            name: raw.name.clone(),
            fg: colour("fg", &raw.fg)?,
            muted: colour("muted", &raw.muted)?,
            accent: colour("accent", &raw.accent)?,
            border: colour("border", &raw.border)?,
            border_focus: colour("border_focus", &raw.border_focus)?,
            title: colour("title", &raw.title)?,
            ok: colour("ok", &raw.ok)?,
            warn: colour("warn", &raw.warn)?,
            error: colour("error", &raw.error)?,
            selection: colour("selection", &raw.selection)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        let root = Path::new("/nonexistent");
        assert_eq!(Theme::load("dark", root).unwrap().name, "dark");
        assert_eq!(Theme::load("light", root).unwrap().name, "light");
    }

    #[test]
    fn bad_colour_names_file_line_and_key() {
        let src = BUILTIN[0].1.replace("accent = \"#88c0d0\"", "accent = \"#zz0000\"");
        let err = Theme::parse(Path::new("themes/mine.toml"), &src).unwrap_err().to_string();
        assert!(err.starts_with("themes/mine.toml:5:10:"), "{err}");
        assert!(err.contains("accent") && err.contains("#zz0000"), "{err}");
    }

    #[test]
    fn unknown_theme_is_an_error() {
        let err = Theme::load("neon", Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(err.contains("no theme `neon`"), "{err}");
    }
}
