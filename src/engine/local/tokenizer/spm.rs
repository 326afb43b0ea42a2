//! SentencePiece tokenization as llama.cpp does it: merge the best-scoring bigrams, then byte fallback.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::vocab::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Highest score first; on a tie, the leftmost pair (llama.cpp's comparator).
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
    }
}

/// Tokenizes one fragment whose spaces are already `▁` (and prefixed, if the model wants it).
pub fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::new();
    for (i, (start, c)) in text.char_indices().enumerate() {
        let end = start + c.len_utf8();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i as isize - 1,
            next: if end == text.len() { -1 } else { i as isize + 1 },
        });
    }
    if symbols.is_empty() {
        return;
    }
    let mut queue = BinaryHeap::new();
    let mut rev_merge: HashMap<String, (usize, usize)> = HashMap::new();
    let try_add = |symbols: &[Symbol],
                   l: isize,
                   r: isize,
                   q: &mut BinaryHeap<Bigram>,
                   rm: &mut HashMap<String, (usize, usize)>| {
        if l < 0 || r < 0 {
            return;
        }
        let (l, r) = (l as usize, r as usize);
        let piece = &text[symbols[l].start..symbols[l].start + symbols[l].len + symbols[r].len];
        if let Some(&id) = vocab.ids.get(piece) {
            q.push(Bigram { left: l, right: r, score: vocab.scores[id as usize], size: piece.len() });
            rm.insert(piece.to_string(), (l, r));
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, i as isize - 1, i as isize, &mut queue, &mut rev_merge);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left as isize;
        }
        let left = symbols[b.left];
        try_add(&symbols, left.prev, b.left as isize, &mut queue, &mut rev_merge);
        try_add(&symbols, b.left as isize, left.next, &mut queue, &mut rev_merge);
    }
    let mut i: isize = 0;
    while i != -1 {
        resegment(vocab, text, &symbols, &rev_merge, i as usize, out);
        i = symbols[i as usize].next;
    }
}

fn resegment(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    rev_merge: &HashMap<String, (usize, usize)>,
    i: usize,
    out: &mut Vec<u32>,
) {
    let s = symbols[i];
    let piece = &text[s.start..s.start + s.len];
    if let Some(&id) = vocab.ids.get(piece) {
        out.push(id);
        return;
    }
    match rev_merge.get(piece) {
        Some(&(l, r)) => {
            resegment(vocab, text, symbols, rev_merge, l, out);
            resegment(vocab, text, symbols, rev_merge, r, out);
        }
        None => {
            for b in piece.bytes() {
                if let Some(id) = byte_token(vocab, b) {
                    out.push(id);
                }
            }
        }
    }
}

/// `<0xNN>`, else an ASCII byte as its own one-character token, else the unknown token.
pub fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab
        .ids
        .get(&format!("<0x{b:02X}>"))
        .or_else(|| if b.is_ascii() { vocab.ids.get(&(b as char).to_string()) } else { None })
        .copied()
        .or_else(|| vocab.types.iter().position(|t| *t == super::TokenType::Unknown).map(|i| i as u32))
}

/// The bytes a token stands for: `▁` is a space, `<0xNN>` a raw byte.
pub fn token_bytes(piece: &str) -> Vec<u8> {
    if piece.len() == 6
        && piece.starts_with("<0x")
        && piece.ends_with('>')
        && let Ok(b) = u8::from_str_radix(&piece[3..5], 16)
    {
        return vec![b];
    }
    piece.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::{Model, TokenType, Tokenizer, Vocab};

    fn tokenizer() -> Tokenizer {
        let vocab: &[(&str, f32)] = &[
            ("<unk>", 0.0),
            ("<0xCE>", 0.0),
            ("<0xA9>", 0.0),
            ("\u{2581}", -1.0),
            ("h", -1.0),
            ("e", -1.0),
            ("l", -1.0),
            ("o", -1.0),
            ("he", -1.0),
            ("ll", -2.0),
            ("hell", -3.0),
            ("hello", -4.0),
            ("\u{2581}hello", -5.0),
        ];
        let types = vocab
            .iter()
            .map(|(t, _)| match *t {
                "<unk>" => TokenType::Unknown,
                t if t.starts_with("<0x") => TokenType::Byte,
                _ => TokenType::Normal,
            })
            .collect();
        let v = Vocab::finish(
            vocab.iter().map(|(t, _)| t.to_string()).collect(),
            types,
            vocab.iter().map(|(_, s)| *s).collect(),
            Model::Spm { add_space_prefix: true },
            None,
            None,
            Vec::new(),
            true,
            None,
        );
        Tokenizer::from_vocab(v).unwrap()
    }

    #[test]
    fn merges_by_score_with_a_space_prefix_and_falls_back_to_bytes() {
        let tok = tokenizer();
        let ids = tok.encode("hello Ω", false).unwrap();
        let pieces: Vec<&str> = ids.iter().map(|&i| tok.vocab.tokens[i as usize].as_str()).collect();
        assert_eq!(pieces, ["\u{2581}hello", "\u{2581}", "<0xCE>", "<0xA9>"]);
        assert_eq!(tok.decode(&ids), " hello Ω");
    }
}
