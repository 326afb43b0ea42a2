//! A word-level diff of the expected answer against a lane's, for the case browser.

/// One run of words: in both texts, only in the expected one, or only in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Same(String),
    Expected(String),
    Answer(String),
}

/// Beyond this many words on a side the table would be large; the texts are then shown as one change.
const MAX_WORDS: usize = 600;

/// Words (with their trailing whitespace kept out) aligned by their longest common subsequence.
pub fn words(expected: &str, answer: &str) -> Vec<Piece> {
    let a: Vec<&str> = expected.split_whitespace().collect();
    let b: Vec<&str> = answer.split_whitespace().collect();
    if a.len() > MAX_WORDS || b.len() > MAX_WORDS {
        return vec![Piece::Expected(a.join(" ")), Piece::Answer(b.join(" "))];
    }
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out: Vec<Piece> = Vec::new();
    let mut push = |p: Piece| {
        let merged = match (out.last_mut(), &p) {
            (Some(Piece::Same(s)), Piece::Same(w))
            | (Some(Piece::Expected(s)), Piece::Expected(w))
            | (Some(Piece::Answer(s)), Piece::Answer(w)) => {
                s.push(' ');
                s.push_str(w);
                true
            }
            _ => false,
        };
        if !merged {
            out.push(p);
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push(Piece::Same(a[i].into()));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            push(Piece::Answer(b[j].into()));
            j += 1;
        } else {
            push(Piece::Expected(a[i].into()));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_value_shows_as_one_removal_and_one_addition() {
        let d = words(r#"{"intent": "billing", "urgency": "high"}"#, r#"{"intent": "refund", "urgency": "high"}"#);
        assert_eq!(
            d,
            [
                Piece::Same("{\"intent\":".into()),
                Piece::Answer("\"refund\",".into()),
                Piece::Expected("\"billing\",".into()),
                Piece::Same("\"urgency\": \"high\"}".into()),
            ]
        );
        assert_eq!(words("same words", "same words"), [Piece::Same("same words".into())]);
    }
}
