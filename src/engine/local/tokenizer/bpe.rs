//! Byte-level BPE (GPT-2 family) through the `tokenizers` crate, with llama.cpp's pre-tokenizer regexes.

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizer, SplitDelimiterBehavior, Tokenizer};

use super::TokenizerError;
use super::vocab::Vocab;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's rule with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's rule with combining marks kept in words.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's adaptation of o200k's rule (its engine lacks \p{Lu} classes): an upper-case run is any letter but
/// a-z, a lower-case run any letter but A-Z. Taken as llama.cpp writes it, since its ids are the reference.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp applies, in order, for a `tokenizer.ggml.pre` value (llama-vocab.cpp).
pub fn pre_regexes(pre: &str) -> Result<(Vec<&'static str>, bool), TokenizerError> {
    Ok(match pre {
        // (regexes, ignore_merges)
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (vec![LLAMA3], true),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", GPT2], false)
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" => (vec![QWEN2], false),
        "qwen35" => (vec![QWEN35], false),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => (vec![GPT4O], false),
        "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" | "trillion" => (vec![GPT2], false),
        "default" => (vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], false),
        other => return Err(TokenizerError::Unsupported(format!("pre-tokenizer `{other}` (tokenizer.ggml.pre)"))),
    })
}

/// A `tokenizers` pipeline equivalent to llama.cpp's BPE session for this vocabulary.
pub fn build(vocab: &Vocab, pre: &str, merges: &[(String, String)]) -> Result<Tokenizer, TokenizerError> {
    let (regexes, ignore_merges) = pre_regexes(pre)?;
    let map: tokenizers::models::bpe::Vocab =
        vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(map, merges.to_vec())
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Invalid(format!("BPE: {e}")))?;
    let mut parts = splits(&regexes)?;
    parts.push(ByteLevel::new(false, false, false).into());
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(Sequence::new(parts)));
    Ok(tok)
}

/// Each regex splits every piece the previous ones left, its matches and the text between them kept as
/// pieces (llama.cpp's unicode_regex_split).
fn splits(regexes: &[&str]) -> Result<Vec<PreTokenizerWrapper>, TokenizerError> {
    regexes
        .iter()
        .map(|r| {
            Split::new(SplitPattern::Regex(r.to_string()), SplitDelimiterBehavior::Isolated, false)
                .map(Into::into)
                .map_err(|e| TokenizerError::Invalid(format!("regex {r}: {e}")))
        })
        .collect()
}

/// The pieces `pre`'s rules cut `text` into before BPE merges within each (for checking them against llama.cpp).
pub fn pre_split(pre: &str, text: &str) -> Result<Vec<String>, TokenizerError> {
    let (regexes, _) = pre_regexes(pre)?;
    super::bound_regex_search();
    let mut pts = tokenizers::PreTokenizedString::from(text);
    Sequence::new(splits(&regexes)?).pre_tokenize(&mut pts).map_err(|e| TokenizerError::Hf(e.to_string()))?;
    Ok(pts
        .get_splits(tokenizers::OffsetReferential::Original, tokenizers::OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect())
}

/// GPT-2's byte ↔ printable-character table: a token's characters map back to raw bytes.
pub fn char_to_byte() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable.into_iter().zip(chars).filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8))).collect()
}
