//! Chat templates: the model's own Jinja template rendered with minijinja, or a named fallback with a warning.

use std::ops::Range;

use minijinja::{Environment, Error, ErrorKind, context};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
const LLAMA2: &str = "{{ bos_token }}[INST] {% for m in messages %}{% if m.role == 'system' %}<<SYS>>\n{{ m.content }}\n<</SYS>>\n\n{% else %}{{ m.content }}{% endif %}{% endfor %} [/INST]";

/// A prompt rendered for the model, with the spans that came from the user's and system's own text.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of `text` holding message content: tokenized as plain text, never as control tokens.
    pub plain: Vec<Range<usize>>,
}

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
            None if has_token("[INST]") || (!has_token("<|im_start|>") && has_token("</s>")) => {
                (LLAMA2.to_string(), Some("llama2"))
            }
            None => (CHATML.to_string(), Some("chatml")),
        };
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| today(&fmt));
        env.add_template_owned("chat", source).map_err(|e| TemplateError(e.to_string()))?;
        Ok(Self { env, fallback })
    }

    /// A visible note when the model had no template of its own.
    pub fn warning(&self) -> Option<String> {
        self.fallback.map(|n| format!("the model has no chat template; using the `{n}` template"))
    }

    /// Renders a system + user conversation with the generation prompt on.
    pub fn render(&self, system: &str, user: &str, bos: &str, eos: &str) -> Result<Rendered, TemplateError> {
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(context! { role => "system", content => system });
        }
        messages.push(context! { role => "user", content => user });
        let tmpl = self.env.get_template("chat").map_err(|e| TemplateError(e.to_string()))?;
        let text = tmpl
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => bos,
                eos_token => eos,
                date_string => today("%d %b %Y"),
            })
            .map_err(|e| TemplateError(format!("{e:#}")))?;
        let plain = locate(&text, &[system, user]);
        Ok(Rendered { text, plain })
    }
}

/// Finds each content string, in order, in the rendered text (as written, else trimmed, as templates often trim).
fn locate(text: &str, contents: &[&str]) -> Vec<Range<usize>> {
    let mut at = 0;
    let mut out = Vec::new();
    for c in contents {
        for candidate in [*c, c.trim()] {
            if candidate.is_empty() {
                break;
            }
            if let Some(i) = text[at..].find(candidate) {
                out.push(at + i..at + i + candidate.len());
                at += i + candidate.len();
                break;
            }
        }
    }
    out
}

/// Today's date for templates that print it (Llama 3.1+): `%d %b %Y` style, UTC.
fn today(fmt: &str) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
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
