//! Chat templates: the model's own Jinja template rendered with minijinja, or a named fallback with a warning.

use std::ops::Range;

use minijinja::{Environment, Error, ErrorKind, context};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
/// Gemma 2's own format; it takes no system turn, so a system prompt is folded (and the pane says so).
const GEMMA: &str = "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
const PHI3: &str = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
const LLAMA2: &str = "{{ bos_token }}[INST] {% for m in messages %}{% if m.role == 'system' %}<<SYS>>\n{{ m.content }}\n<</SYS>>\n\n{% else %}{{ m.content }}{% endif %}{% endfor %} [/INST]";

/// A prompt rendered for the model, with the spans that came from the user's and system's own text.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of `text` holding message content: tokenized as plain text, never as control tokens.
    pub plain: Vec<Range<usize>>,
    /// The template takes no system turn, so the system prompt went into the first user turn.
    pub folded: bool,
}

/// Shown in the lane and beside its count when a render was folded.
pub const FOLD_NOTE: &str =
    "the chat template takes no system role: the system prompt is folded into the first user turn";

/// What a lane decides about a render besides its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Passed to the template as `enable_thinking` (Qwen3 and SmolLM3 think unless it is false).
    pub enable_thinking: bool,
}

/// Instructions one render may run.
pub const FUEL: u64 = 1_000_000;
/// Largest rendered prompt: far past any context window, and a bound on what a template can make us hold.
pub const MAX_RENDERED: usize = 64 << 20;

pub struct ChatTemplate {
    env: Environment<'static>,
    /// `None` for the model's own template; the fallback's name otherwise.
    pub fallback: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(String);

impl ChatTemplate {
    /// The model's template, or (when it has none) the named template its special tokens suggest.
    pub fn new(own: Option<&str>, has_token: impl Fn(&str) -> bool) -> Result<Self, TemplateError> {
        let (source, fallback) = match own {
            Some(t) => (t.to_string(), None),
            None if has_token("<|start_header_id|>") => (LLAMA3.to_string(), Some("llama3")),
            // Before the `</s>` test: Gemma and Phi-3 vocabularies hold `</s>` too.
            None if has_token("<start_of_turn>") => (GEMMA.to_string(), Some("gemma")),
            None if has_token("<|user|>") && has_token("<|end|>") => (PHI3.to_string(), Some("phi3")),
            None if has_token("[INST]") || (!has_token("<|im_start|>") && has_token("</s>")) => {
                (LLAMA2.to_string(), Some("llama2"))
            }
            None => (CHATML.to_string(), Some("chatml")),
        };
        let mut env = Environment::new();
        // A template is code from the model file: nested loops (each `range` may hold 100 000 items) would
        // otherwise run for hours. Real chat templates use a few thousand instructions per render.
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // transformers compiles chat templates with both on; without them a template's `{# … #}` or
        // `{% … %}` lines leave newlines and indentation in the prompt the model was never trained on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| today(&fmt));
        env.add_template_owned("chat", source).map_err(|e| TemplateError(e.to_string()))?;
        Ok(Self { env, fallback })
    }

    /// Whether the template's source calls `name` (e.g. `strftime_now`: it prints today's date).
    pub fn source_calls(&self, name: &str) -> bool {
        self.env.get_template("chat").is_ok_and(|t| t.source().contains(name))
    }

    /// A visible note when the model had no template of its own.
    pub fn warning(&self) -> Option<String> {
        self.fallback.map(|n| format!("the model has no chat template; using the `{n}` template"))
    }

    /// Renders a system + user conversation with the generation prompt on (an empty system is left out).
    pub fn render(&self, system: &str, user: &str, bos: &str, eos: &str) -> Result<Rendered, TemplateError> {
        self.render_with(system, user, bos, eos, RenderOptions::default())
    }

    /// [`Self::render`] with a lane's options.
    pub fn render_with(
        &self,
        system: &str,
        user: &str,
        bos: &str,
        eos: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, TemplateError> {
        let mut messages = Vec::with_capacity(2);
        if !system.is_empty() {
            messages.push(("system", system));
        }
        messages.push(("user", user));
        self.render_chat_with(&messages, true, bos, eos, opts)
    }

    /// Renders `(role, content)` messages; `generation` appends the assistant's opening (a prompt to answer).
    /// A finished conversation (for training data) is rendered with it off.
    pub fn render_chat(
        &self,
        messages: &[(&str, &str)],
        generation: bool,
        bos: &str,
        eos: &str,
    ) -> Result<Rendered, TemplateError> {
        self.render_chat_with(messages, generation, bos, eos, RenderOptions::default())
    }

    /// [`Self::render_chat`] with a lane's options. A template that refuses a leading system turn (Mistral
    /// v0.1–0.3, Gemma 2 raise) or drops it without a word gets the system text, a blank line and the first
    /// user turn as one user turn, as Ollama and llama.cpp do: the model still sees the instructions.
    pub fn render_chat_with(
        &self,
        messages: &[(&str, &str)],
        generation: bool,
        bos: &str,
        eos: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, TemplateError> {
        let foldable = matches!(messages, [("system", s), ("user", _), ..] if !s.trim().is_empty());
        let first = self.render_marked(messages, generation, bos, eos, opts);
        let needs_fold = match &first {
            Ok((_, system_shown)) => !system_shown,
            Err(_) => true,
        };
        if !(foldable && needs_fold) {
            return first.map(|(r, _)| r);
        }
        let joined = format!("{}\n\n{}", messages[0].1, messages[1].1);
        let mut folded = vec![("user", joined.as_str())];
        folded.extend_from_slice(&messages[2..]);
        match self.render_marked(&folded, generation, bos, eos, opts) {
            Ok((r, _)) => Ok(Rendered { folded: true, ..r }),
            // Folding did not help either: the template's own complaint is the clearer one.
            Err(_) => first.map(|(r, _)| r),
        }
    }

    /// The render, and whether a leading system message's text made it into the prompt.
    fn render_marked(
        &self,
        messages: &[(&str, &str)],
        generation: bool,
        bos: &str,
        eos: &str,
        opts: RenderOptions,
    ) -> Result<(Rendered, bool), TemplateError> {
        let text = self.render_raw(messages, generation, bos, eos, opts)?;
        // Where the messages went: render again with markers in their place, then check that putting the
        // messages (as written, or trimmed, as templates often trim) back gives the same text.
        let marks: Vec<String> = (0..messages.len()).map(|i| format!("\u{E000}{i}:{}\u{E001}", text.len())).collect();
        let marked: Vec<(&str, &str)> = messages
            .iter()
            .zip(&marks)
            .map(|(&(role, content), m)| (role, if content.is_empty() { "" } else { m.as_str() }))
            .collect();
        let shown = self.render_raw(&marked, generation, bos, eos, opts)?;
        // The marker is the robust test; the text itself covers a template that escapes content (tojson).
        let system_shown = match messages.first() {
            Some(&("system", s)) if !s.trim().is_empty() => shown.contains(&marks[0]) || text.contains(s.trim()),
            _ => true,
        };
        for trim in [false, true] {
            let contents: Vec<&str> = messages.iter().map(|&(_, c)| if trim { c.trim() } else { c }).collect();
            if let Some((rebuilt, plain)) = substitute(&shown, &marks, &contents)
                && rebuilt == text
            {
                return Ok((Rendered { text, plain, folded: false }, system_shown));
            }
        }
        // A template that rewrites message text: nothing can be marked plain safely, so nothing is.
        Ok((Rendered { text, plain: Vec::new(), folded: false }, system_shown))
    }

    fn render_raw(
        &self,
        messages: &[(&str, &str)],
        generation: bool,
        bos: &str,
        eos: &str,
        opts: RenderOptions,
    ) -> Result<String, TemplateError> {
        let messages: Vec<_> =
            messages.iter().map(|&(role, content)| context! { role => role, content => content }).collect();
        let tmpl = self.env.get_template("chat").map_err(|e| TemplateError(e.to_string()))?;
        let mut out = Capped::default();
        let ctx = context! {
            messages => messages,
            add_generation_prompt => generation,
            bos_token => bos,
            eos_token => eos,
            date_string => today("%d %b %Y"),
            // As transformers' apply_chat_template passes them: no tools, no documents.
            tools => (),
            documents => (),
            enable_thinking => opts.enable_thinking,
        };
        match tmpl.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.text).map_err(|e| TemplateError(format!("rendered text is not UTF-8: {e}"))),
            Err(_) if out.over => Err(TemplateError(format!("the rendered prompt passed {} MiB", MAX_RENDERED >> 20))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => {
                Err(TemplateError(format!("the template ran past {FUEL} instructions (a runaway loop?)")))
            }
            Err(e) => Err(TemplateError(format!("{e:#}"))),
        }
    }
}

/// A render target that refuses to grow past `MAX_RENDERED`.
#[derive(Default)]
struct Capped {
    text: Vec<u8>,
    /// The cap was hit (the render's error is then this one).
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDERED {
            self.over = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Replaces each marker (appearing at most once) by its content; returns the text and the content spans.
fn substitute(shown: &str, marks: &[String], contents: &[&str]) -> Option<(String, Vec<Range<usize>>)> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for (i, m) in marks.iter().enumerate() {
        match shown.matches(m.as_str()).count() {
            0 => {}
            1 => found.push((shown.find(m.as_str())?, i)),
            _ => return None,
        }
    }
    found.sort();
    let mut text = String::with_capacity(shown.len());
    let mut plain = Vec::new();
    let mut at = 0;
    for (pos, i) in found {
        text.push_str(&shown[at..pos]);
        let start = text.len();
        text.push_str(contents[i]);
        if !contents[i].is_empty() {
            plain.push(start..text.len());
        }
        at = pos + marks[i].len();
    }
    text.push_str(&shown[at..]);
    Some((text, plain))
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Today's date for templates that print it (Llama 3.1+): `%d %b %Y` style, UTC.
fn today(fmt: &str) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    fmt.replace("%d", &format!("{d:02}"))
        .replace("%b", MONTHS[(m - 1) as usize])
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_marks_the_message_text_plain() {
        let t = ChatTemplate::new(None, |s| s == "<|im_start|>").unwrap();
        assert_eq!(t.fallback, Some("chatml"));
        let r = t.render("Be brief.", "Hi <|im_end|> there", "", "").unwrap();
        assert_eq!(
            r.text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi <|im_end|> there<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(&r.text[r.plain[1].clone()], "Hi <|im_end|> there");
    }

    #[test]
    fn gemma_and_phi3_vocabularies_get_their_own_format_not_llama2s() {
        let gemma = ChatTemplate::new(None, |s| ["<start_of_turn>", "<end_of_turn>", "</s>"].contains(&s)).unwrap();
        assert_eq!(gemma.fallback, Some("gemma"));
        let r = gemma.render("Be brief.", "Hi", "<bos>", "<eos>").unwrap();
        assert_eq!(r.text, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
        assert!(r.folded, "Gemma's format takes no system turn");
        let phi = ChatTemplate::new(None, |s| ["<|user|>", "<|end|>", "</s>"].contains(&s)).unwrap();
        assert_eq!(phi.fallback, Some("phi3"));
        let r = phi.render("Be brief.", "Hi", "<s>", "</s>").unwrap();
        assert_eq!(r.text, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
    }

    #[test]
    fn a_typed_marker_never_borrows_the_templates_own() {
        let t = ChatTemplate::new(None, |s| s == "<|im_start|>").unwrap();
        let r = t.render("Sys", "<|im_end|>", "", "").unwrap();
        // The user's `<|im_end|>` is the one after `user\n`, not the template's after `Sys`.
        let user_at = r.text.find("user\n").unwrap() + 5;
        assert_eq!(r.plain[1], user_at..user_at + "<|im_end|>".len());
        // A trimming template still finds the (trimmed) message.
        let t = ChatTemplate::new(Some("[{{ messages[0].content | trim }}]"), |_| false).unwrap();
        let r = t.render("", "  hi  ", "", "").unwrap();
        assert_eq!(r.text, "[hi]");
        assert_eq!(r.plain.first(), Some(&(1..3)));
    }

    #[test]
    fn raise_exception_and_python_methods_work() {
        let src = "{% if messages[0].role != 'system' %}{{ raise_exception('need a system turn') }}{% endif %}{{ messages[0].content.strip().upper() }}";
        let t = ChatTemplate::new(Some(src), |_| false).unwrap();
        assert_eq!(t.render(" hi ", "u", "", "").unwrap().text, "HI");
        let err = t.render("", "u", "", "").unwrap_err().to_string();
        assert!(err.contains("need a system turn"), "{err}");
    }

    #[test]
    fn the_date_looks_like_a_date() {
        let d = today("%d %b %Y");
        assert_eq!(d.len(), 11, "{d}");
    }
}
