//! Turning sampled ids into streamed text: whole UTF-8 characters only, and stop strings never shown.

use super::tokenizer::Tokenizer;

/// Decodes generated ids incrementally; text that could still become a stop string is held back.
pub struct TextStream {
    ids: Vec<u32>,
    /// Decoded text already handed out.
    sent: String,
    stops: Vec<String>,
}

pub enum Piece {
    Text(String),
    /// A stop string appeared: the text before it (not sent yet) ends the answer.
    Stop(String),
}

impl TextStream {
    pub fn new(stops: &[String]) -> Self {
        Self { ids: Vec::new(), sent: String::new(), stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect() }
    }

    /// Adds one id; returns the text that may be shown now.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Piece {
        self.ids.push(id);
        let full = tok.decode(&self.ids);
        // A trailing U+FFFD is an incomplete UTF-8 sequence: wait for the next token.
        let stable = full.trim_end_matches('\u{FFFD}');
        let stable = if stable.len() < full.len() { stable } else { full.as_str() };
        if !stable.starts_with(&self.sent) {
            // Byte-level merges can rewrite the tail; only ever send forward.
            return Piece::Text(String::new());
        }
        let pending = &stable[self.sent.len()..];
        // The earliest stop string in the window that could hold one (spanning sent and pending text) wins.
        let cut = self
            .stops
            .iter()
            .filter_map(|s| {
                let window_start = floor_char(stable, self.sent.len().saturating_sub(s.len()));
                stable[window_start..].find(s.as_str()).map(|i| window_start + i)
            })
            .min();
        if let Some(cut) = cut {
            let before = if cut >= self.sent.len() { stable[self.sent.len()..cut].to_string() } else { String::new() };
            return Piece::Stop(before);
        }
        let hold = self.stops.iter().map(|s| partial_suffix(pending, s)).max().unwrap_or(0);
        let send = floor_char(pending, pending.len() - hold);
        let out = pending[..send].to_string();
        self.sent.push_str(&out);
        Piece::Text(out)
    }

    /// Text held back for a possible stop string that never came.
    pub fn flush(&mut self, tok: &Tokenizer) -> String {
        let full = tok.decode(&self.ids);
        let rest = full.get(self.sent.len()..).unwrap_or("").to_string();
        self.sent.push_str(&rest);
        rest
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::local::tokenizer::{Model, TokenType, Vocab};

    /// A byte-level vocabulary whose id n is byte n.
    fn bytes_tokenizer() -> Tokenizer {
        let table = crate::engine::local::tokenizer::byte_chars();
        let tokens: Vec<String> = (0..=255u8).map(|b| table[&b].to_string()).collect();
        let v = Vocab::finish(
            tokens,
            vec![TokenType::Normal; 256],
            vec![0.0; 256],
            Model::Bpe { pre: "gpt2".into(), merges: Vec::new() },
            None,
            None,
            Vec::new(),
            false,
            None,
        );
        Tokenizer::from_vocab(v).unwrap()
    }

    #[test]
    fn multi_byte_characters_are_never_split() {
        let tok = bytes_tokenizer();
        let mut s = TextStream::new(&[]);
        let mut pieces = Vec::new();
        for b in "aé東🚀".bytes() {
            if let Piece::Text(t) = s.push(&tok, u32::from(b)) {
                pieces.push(t);
            }
        }
        let shown: Vec<&str> = pieces.iter().map(String::as_str).filter(|p| !p.is_empty()).collect();
        assert_eq!(shown, ["a", "é", "東", "🚀"]);
    }

    #[test]
    fn stop_strings_are_held_back_then_cut() {
        let tok = bytes_tokenizer();
        let mut s = TextStream::new(&["END".to_string()]);
        let mut shown = String::new();
        for b in "abcEN".bytes() {
            if let Piece::Text(t) = s.push(&tok, u32::from(b)) {
                shown.push_str(&t);
            }
        }
        assert_eq!(shown, "abc", "`EN` might start the stop string");
        assert!(matches!(s.push(&tok, u32::from(b'D')), Piece::Stop(rest) if rest.is_empty()));
        let mut s = TextStream::new(&["END".to_string()]);
        for b in "abEx".bytes() {
            s.push(&tok, u32::from(b));
        }
        assert_eq!(s.flush(&tok), "", "nothing held once `Ex` ruled the stop out");
    }

    #[test]
    fn the_earliest_stop_string_wins_whatever_the_list_order() {
        let tok = bytes_tokenizer();
        let mut s = TextStream::new(&["\n".to_string(), ".".to_string()]);
        let mut shown = String::new();
        for b in "ok.\n".bytes() {
            match s.push(&tok, u32::from(b)) {
                Piece::Text(t) => shown.push_str(&t),
                Piece::Stop(t) => {
                    shown.push_str(&t);
                    break;
                }
            }
        }
        assert_eq!(shown, "ok");
    }

    #[test]
    fn partial_suffix_finds_stop_prefixes() {
        assert_eq!(partial_suffix("hello wor", "world"), 3);
        assert_eq!(partial_suffix("hello", "world"), 0);
        assert_eq!(partial_suffix("a\n", "\n\n"), 1);
    }
}
