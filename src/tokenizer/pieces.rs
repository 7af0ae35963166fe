//! Long texts tokenized piece by piece, into a compact list of tokens.
//!
//! A text is cut where tokenization cannot cross the cut (before a run of whitespace, or
//! after ASCII punctuation for BERT's pre-tokenizer, never inside, right before or right
//! after an added token such as `[MASK]`), so every piece tokenizes exactly as it would
//! within the whole text. Each piece is tokenized without special tokens and its tokens
//! kept as (id, character offsets, word); what the caller will cut off is counted but not
//! kept. Memory is then bounded by one piece plus the kept tokens, whatever the text's
//! length.

use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Bytes of text tokenized at a time (a piece ends at the first safe cut after this).
pub const PIECE_BYTES: usize = 64 * 1024;

/// Marks a token of no word in [`Pieces::words`].
pub const NO_WORD: u32 = u32::MAX;

/// The tokens of one text (no special tokens), the first `kept` of them stored, in 16
/// bytes a token.
#[derive(Debug, Clone, Default)]
pub struct Pieces {
    /// Token ids.
    pub ids: Vec<u32>,
    /// (start, end) character offsets into the whole text.
    pub offsets: Vec<(u32, u32)>,
    /// Word index of each token within the text ([`NO_WORD`] for none).
    pub words: Vec<u32>,
    /// Tokens of the whole text, stored or not; exact when `counted`.
    pub total: usize,
    /// Whether `total` counts every token of the text (false: the text has more than the
    /// stored tokens, and counting stopped there).
    pub counted: bool,
}

/// How much of a text [`tokenize`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every token.
    All,
    /// The first n tokens; counting stops once the text is known to have more.
    First(usize),
    /// The first n tokens, but every token is counted.
    FirstCountAll(usize),
}

/// Tokenizes `text` in pieces of about `piece_bytes`, keeping what `keep` says.
pub fn tokenize(base: &Tokenizer, text: &str, keep: Keep, piece_bytes: usize) -> Result<Pieces> {
    let limit = match keep {
        Keep::All => usize::MAX,
        Keep::First(n) | Keep::FirstCountAll(n) => n,
    };
    let cuts = Cuts::new(base, text, piece_bytes);
    let mut out = Pieces {
        counted: true,
        ..Default::default()
    };
    if u32::try_from(text.len()).is_err() {
        return Err(Error::Input(format!(
            "a text of {} bytes is too long to tokenize (at most 4 GiB)",
            text.len()
        )));
    }
    // Every offset and word index is below the text's length in bytes, so fits a u32.
    let (mut char_base, mut word_base) = (0u32, 0u32);
    for piece in cuts {
        let e = base
            .encode_char_offsets(piece, false)
            .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
        let room = limit.saturating_sub(out.ids.len()).min(e.len());
        out.ids.extend_from_slice(&e.get_ids()[..room]);
        out.offsets.extend(
            e.get_offsets()[..room]
                .iter()
                .map(|&(a, b)| (a as u32 + char_base, b as u32 + char_base)),
        );
        out.words.extend(
            e.get_word_ids()[..room]
                .iter()
                .map(|w| w.map_or(NO_WORD, |w| w + word_base)),
        );
        out.total += e.len();
        if let Some(last) = e.get_word_ids().iter().flatten().max() {
            word_base += last + 1;
        }
        char_base += piece.chars().count() as u32;
        if matches!(keep, Keep::First(_)) && out.total > limit {
            out.counted = false;
            break;
        }
    }
    Ok(out)
}

/// Whether pieces of a text tokenize as the whole text does with this tokenizer: its
/// pre-tokenizer splits at whitespace (and punctuation) and its normalizer works
/// character by character. Other tokenizers get the text in one piece.
fn splits_cleanly(base: &Tokenizer) -> Option<bool> {
    fn char_local(n: &NormalizerWrapper) -> bool {
        match n {
            NormalizerWrapper::BertNormalizer(_)
            | NormalizerWrapper::StripNormalizer(_)
            | NormalizerWrapper::StripAccents(_)
            | NormalizerWrapper::NFC(_)
            | NormalizerWrapper::NFD(_)
            | NormalizerWrapper::NFKC(_)
            | NormalizerWrapper::NFKD(_)
            | NormalizerWrapper::Lowercase(_) => true,
            NormalizerWrapper::Sequence(s) => s.as_ref().iter().all(char_local),
            _ => false,
        }
    }
    let punctuation = match base.get_pre_tokenizer()? {
        PreTokenizerWrapper::BertPreTokenizer(_) => true,
        PreTokenizerWrapper::Whitespace(_) | PreTokenizerWrapper::WhitespaceSplit(_) => false,
        _ => return None,
    };
    base.get_normalizer()
        .is_none_or(char_local)
        .then_some(punctuation)
}

/// The pieces of a text, each ending at a safe cut.
struct Cuts<'t> {
    text: &'t str,
    at: usize,
    piece_bytes: usize,
    /// None: the text is one piece; Some(p): cuts at whitespace, and after ASCII
    /// punctuation when p.
    punctuation: Option<bool>,
    /// Added tokens' texts (special tokens included), which no cut may touch.
    added: Vec<String>,
}

impl<'t> Cuts<'t> {
    fn new(base: &Tokenizer, text: &'t str, piece_bytes: usize) -> Self {
        let added = base
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .filter(|c| !c.is_empty())
            .collect();
        Cuts {
            text,
            at: 0,
            piece_bytes: piece_bytes.max(1),
            punctuation: splits_cleanly(base),
            added,
        }
    }

    /// Whether the text may be cut before byte `p` (a char boundary inside the text).
    fn safe(&self, p: usize, punctuation: bool) -> bool {
        let (before, after) = self.text.split_at(p);
        let (Some(prev), Some(next)) = (before.chars().next_back(), after.chars().next()) else {
            return false;
        };
        let at_space = next.is_whitespace() && !prev.is_whitespace();
        // An ASCII character after the cut cannot compose with the punctuation before it.
        let after_punct = punctuation && prev.is_ascii_punctuation() && next.is_ascii();
        if !(at_space || after_punct) {
            return false;
        }
        // No added token may end at the cut, begin after the whitespace that follows it,
        // or span it (each may strip the whitespace beside it, or be split by the cut).
        let rest = after.trim_start();
        !self.added.iter().any(|t| {
            before.ends_with(t.as_str()) || rest.starts_with(t.as_str()) || spans(self.text, p, t)
        })
    }
}

/// Whether an occurrence of `token` covers both sides of byte `p` of `text`.
fn spans(text: &str, p: usize, token: &str) -> bool {
    let n = token.len();
    let lo = floor_boundary(text, p.saturating_sub(n - 1));
    let hi = ceil_boundary(text, (p + n - 1).min(text.len()));
    let window = &text[lo..hi];
    window
        .match_indices(token)
        .any(|(i, _)| lo + i < p && p < lo + i + n)
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

impl<'t> Iterator for Cuts<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = &self.text[self.at..];
        if rest.is_empty() {
            return None;
        }
        let end = match self.punctuation {
            Some(punctuation) if rest.len() > self.piece_bytes => {
                let from = ceil_boundary(self.text, self.at + self.piece_bytes);
                self.text[from..]
                    .char_indices()
                    .map(|(i, _)| from + i)
                    .find(|&p| self.safe(p, punctuation))
                    .unwrap_or(self.text.len())
            }
            _ => self.text.len(),
        };
        let piece = &self.text[self.at..end];
        self.at = end;
        Some(piece)
    }
}
