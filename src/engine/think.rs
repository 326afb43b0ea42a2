//! A reasoning model's `<think>…</think>` block, told apart from its answer (Qwen3, SmolLM3, DeepSeek-R1).

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Splits an answer into its thinking (None when there is no block) and the answer proper. An unclosed
/// block (still streaming, or cut by max_tokens) is all thinking. Templates that open the block in the
/// prompt leave only `</think>` in the answer: what comes before it is the thinking.
pub fn split(text: &str) -> (Option<&str>, &str) {
    let lead = text.len() - text.trim_start().len();
    let (start, body) = match text[lead..].strip_prefix(OPEN) {
        Some(rest) => (lead + OPEN.len(), rest),
        None if text.contains(CLOSE) => (0, text),
        None => return (None, text),
    };
    match body.find(CLOSE) {
        Some(end) => (Some(&text[start..start + end]), text[start + end + CLOSE.len()..].trim_start()),
        None => (Some(&text[start..]), ""),
    }
}

/// The answer without its thinking: what evals judge.
pub fn answer(text: &str) -> &str {
    split(text).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_is_split_from_the_answer() {
        assert_eq!(split("<think>\nhm, 2+2\n</think>\n\n4."), (Some("\nhm, 2+2\n"), "4."));
        assert_eq!(split("\n<think>still going"), (Some("still going"), ""));
        assert_eq!(split("opened by the prompt</think>4."), (Some("opened by the prompt"), "4."));
        assert_eq!(split("<think>\n\n</think>\n\n4."), (Some("\n\n"), "4."));
        assert_eq!(split("4. No block here."), (None, "4. No block here."));
        assert_eq!(answer("<think>x</think> yes"), "yes");
    }
}
