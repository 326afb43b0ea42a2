//! A Go text/template (Ollama's TEMPLATE) that renders what the model's own chat template renders, derived by
//! rendering probe conversations with tunebench's renderer (the one lanes use) and reading the text around
//! each message: the opening before the first message, what follows a system, a user and an assistant
//! message, and the generation prompt. Held to the model's template on a longer conversation, and said when
//! only the system + user prompt a lane sends renders the same.

use crate::engine::local::template::{ChatTemplate, RenderOptions};

/// Markers no template adds or changes (letters only, so `trim` and escaping leave them alone).
const SYSTEM: &str = "TBSYSTEMQZX";
const USER1: &str = "TBUSERONEQZX";
const ASSISTANT1: &str = "TBASSISTANTONEQZX";
const USER2: &str = "TBUSERTWOQZX";

/// The six-turn chat a derived TEMPLATE is held to (the derivation reads other conversations).
pub const CHECK: [(&str, &str); 6] = [
    ("system", "Be brief."),
    ("user", "Hi there"),
    ("assistant", "Hello!"),
    ("user", "What is 2+2?"),
    ("assistant", "4"),
    ("user", "And 3+3?"),
];

/// The text a template puts around messages, as Ollama's `.Messages` carries them (system first, then user
/// and assistant turns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    /// Before the first message when there is a system message.
    pub open_with_system: String,
    /// Before the first message when there is none (a template's default system turn lands here).
    pub open_without_system: String,
    pub after_system: String,
    pub after_user: String,
    pub before_assistant: String,
    pub after_assistant: String,
    /// After the last message: the assistant's opening that the model answers from.
    pub generation: String,
    /// The system text goes before the last message (when it is the user's), not first (Mistral's
    /// templates); `after_system` then separates it from that message.
    pub system_before_last_user: bool,
}

/// A derived TEMPLATE and how far it agrees with the model's own.
#[derive(Debug, Clone)]
pub struct Derived {
    pub pieces: Pieces,
    /// The TEMPLATE, in Go's text/template as Ollama runs it.
    pub go: String,
    /// None when a six-turn conversation renders the same too; else where it first differs.
    pub multi_turn_differs: Option<String>,
}

/// Why no TEMPLATE could be derived.
#[derive(Debug, thiserror::Error)]
#[error("the chat template cannot be written as an Ollama TEMPLATE: {0}")]
pub struct DeriveError(pub String);

/// Derives the pieces from `template` (with the lane's options); `bos` is dropped from the openings when
/// `strip_bos` (llama.cpp, under Ollama, adds the model's BOS itself).
pub fn derive(
    template: &ChatTemplate,
    bos: &str,
    eos: &str,
    opts: RenderOptions,
    strip_bos: bool,
) -> Result<Derived, DeriveError> {
    let render = |messages: &[(&str, &str)]| -> Result<String, DeriveError> {
        let r = template.render_chat_with(messages, true, bos, eos, opts).map_err(|e| DeriveError(e.to_string()))?;
        Ok(r.text)
    };
    let with_system = render(&[("system", SYSTEM), ("user", USER1)])?;
    let [open_with_system, after_system, user_then_generation] =
        split(&with_system, &[SYSTEM, USER1], "system + user")?;
    let without = render(&[("user", USER1)])?;
    let [open_without_system, tail] = split(&without, &[USER1], "user alone")?;
    if tail != user_then_generation {
        return Err(DeriveError(format!(
            "what follows the user's message depends on the system message ({tail:?} without it, \
             {user_then_generation:?} with it)"
        )));
    }
    let turns = render(&[("system", SYSTEM), ("user", USER1), ("assistant", ASSISTANT1), ("user", USER2)])?;
    let mut pieces = Pieces {
        open_with_system,
        open_without_system,
        after_system,
        after_user: user_then_generation.clone(),
        before_assistant: String::new(),
        after_assistant: String::new(),
        generation: String::new(),
        system_before_last_user: false,
    };
    // Either the system message comes first, or (Mistral) just before the last user message; otherwise the
    // one-turn pieces stand and the check below says where longer chats differ.
    let first = split::<5>(&turns, &[SYSTEM, USER1, ASSISTANT1, USER2], "a four-turn conversation");
    let last = split::<5>(&turns, &[USER1, ASSISTANT1, SYSTEM, USER2], "a four-turn conversation");
    let found = match (first, last) {
        (Ok([_, _, user_then_assistant, after_assistant, _]), _) => Some((user_then_assistant, after_assistant)),
        (_, Ok([_, user_then_assistant, after_assistant, between, _])) if between == pieces.after_system => {
            pieces.system_before_last_user = true;
            Some((user_then_assistant, after_assistant))
        }
        _ => None,
    };
    if let Some((user_then_assistant, after_assistant)) = found {
        // What follows every user message is the part both continuations share; the rest opens the reply.
        let shared = common_prefix(&user_then_assistant, &user_then_generation);
        pieces.after_user = user_then_assistant[..shared].to_string();
        pieces.before_assistant = user_then_assistant[shared..].to_string();
        pieces.generation = user_then_generation[shared..].to_string();
        pieces.after_assistant = after_assistant;
    }
    if strip_bos && !bos.is_empty() {
        for open in [&mut pieces.open_with_system, &mut pieces.open_without_system] {
            if let Some(rest) = open.strip_prefix(bos) {
                *open = rest.to_string();
            }
        }
    }
    // Held to the model's template on a conversation the derivation did not read.
    let own = render(&CHECK)?;
    let own = if strip_bos { own.strip_prefix(bos).map(str::to_string).unwrap_or(own) } else { own };
    let ours = pieces.render(&CHECK);
    let multi_turn_differs = (own != ours).then(|| first_difference(&own, &ours));
    let go = pieces.go_template();
    Ok(Derived { pieces, go, multi_turn_differs })
}

impl Pieces {
    /// What the TEMPLATE renders for `messages` (system first, if any), as Go would: the mirror the
    /// derivation is checked with.
    pub fn render(&self, messages: &[(&str, &str)]) -> String {
        // Ollama's .System: every system message, joined by a blank line.
        let system = messages.iter().filter(|(r, _)| *r == "system").map(|(_, c)| *c).collect::<Vec<_>>().join("\n\n");
        let has_system = !system.is_empty();
        let mut out = if has_system { self.open_with_system.clone() } else { self.open_without_system.clone() };
        for (i, (role, content)) in messages.iter().enumerate() {
            match *role {
                "system" if !self.system_before_last_user => {
                    out.push_str(content);
                    out.push_str(&self.after_system);
                }
                "user" => {
                    if self.system_before_last_user && has_system && i + 1 == messages.len() {
                        out.push_str(&system);
                        out.push_str(&self.after_system);
                    }
                    out.push_str(content);
                    out.push_str(&self.after_user);
                }
                "assistant" => {
                    out.push_str(&self.before_assistant);
                    out.push_str(content);
                    out.push_str(&self.after_assistant);
                }
                _ => {}
            }
        }
        out.push_str(&self.generation);
        out
    }

    /// The TEMPLATE: every piece of text a Go string literal inside an action, so the `{{-` that lay the
    /// template out over lines never trims a piece.
    pub fn go_template(&self) -> String {
        let lit = |s: &str| if s.is_empty() { String::new() } else { format!("{{{{ {} }}}}", go_string(s)) };
        let [with, without, after_system, after_user, before_assistant, after_assistant, generation] = [
            &self.open_with_system,
            &self.open_without_system,
            &self.after_system,
            &self.after_user,
            &self.before_assistant,
            &self.after_assistant,
            &self.generation,
        ]
        .map(|s| lit(s));
        let assistant =
            format!("{{{{- else if eq .Role \"assistant\" }}}}{before_assistant}{{{{ .Content }}}}{after_assistant}\n");
        let turns = if self.system_before_last_user {
            format!(
                "{{{{- range $i, $m := .Messages }}}}\n\
                 {{{{- if eq .Role \"user\" }}}}\
                 {{{{- if and $.System (eq (len (slice $.Messages $i)) 1) }}}}{{{{ $.System }}}}{after_system}{{{{ end }}}}\
                 {{{{ .Content }}}}{after_user}\n{assistant}"
            )
        } else {
            format!(
                "{{{{- range .Messages }}}}\n\
                 {{{{- if eq .Role \"system\" }}}}{{{{ .Content }}}}{after_system}\n\
                 {{{{- else if eq .Role \"user\" }}}}{{{{ .Content }}}}{after_user}\n{assistant}"
            )
        };
        format!(
            "{{{{- if .System }}}}{with}{{{{ else }}}}{without}{{{{ end }}}}\n{turns}{{{{- end }}}}\n{{{{- end }}}}{generation}"
        )
    }
}

/// `text` cut at each marker, in order, each found once: the pieces between them.
fn split<const N: usize>(text: &str, markers: &[&str], what: &str) -> Result<[String; N], DeriveError> {
    let mut pieces: Vec<String> = Vec::with_capacity(N);
    let mut rest = text;
    for m in markers {
        let Some(at) = rest.find(m) else {
            return Err(DeriveError(format!(
                "rendering {what}, a message's text does not appear once and in order (the template changes or \
                 drops it)"
            )));
        };
        pieces.push(rest[..at].to_string());
        rest = &rest[at + m.len()..];
    }
    if markers.iter().any(|m| rest.contains(m)) {
        return Err(DeriveError(format!("rendering {what}, a message's text appears twice")));
    }
    pieces.push(rest.to_string());
    pieces.try_into().map_err(|_| DeriveError(format!("rendering {what}: {N} pieces expected")))
}

/// Bytes the two share from the start, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// Where two renders part, with a little of each.
fn first_difference(own: &str, ours: &str) -> String {
    let at = common_prefix(own, ours);
    let show = |s: &str| s[at..].chars().take(40).collect::<String>();
    format!(
        "from character {} the model's template gives {:?}, the TEMPLATE {:?}",
        own[..at].chars().count(),
        show(own),
        show(ours)
    )
}

/// A Go string literal: a raw one (backquotes, newlines kept, readable in the Modelfile) where the text
/// allows it, else an interpreted one with escapes.
pub fn go_string(s: &str) -> String {
    if !s.contains('`') && !s.contains('\r') && !s.contains("\"\"\"") {
        return format!("`{s}`");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_strings_are_raw_where_they_can_be() {
        assert_eq!(go_string("<|im_end|>\n"), "`<|im_end|>\n`");
        assert_eq!(go_string("a`b\n\"c\""), "\"a`b\\n\\\"c\\\"\"");
    }

    #[test]
    fn splitting_wants_each_marker_once_in_order() {
        let [a, b, c] = split::<3>("xSyUz", &["S", "U"], "t").unwrap();
        assert_eq!((a.as_str(), b.as_str(), c.as_str()), ("x", "y", "z"));
        assert!(split::<3>("xUySz", &["S", "U"], "t").is_err());
        assert!(split::<3>("xSyUzS", &["S", "U"], "t").is_err());
    }
}
