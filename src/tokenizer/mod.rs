//! The `tokenizers` crate behind a small BERT-shaped API.
//!
//! A checkpoint's tokenizer.json is used when present, else one is built from vocab.txt
//! and tokenizer_config.json as transformers' BertTokenizerFast does (BertNormalizer,
//! BertPreTokenizer, WordPiece, [CLS] A [SEP] (B [SEP]) template). The file's own
//! truncation and padding settings are dropped: the caller decides per call.
//! Offsets are character positions in the original text.

mod pieces;
mod windows;

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::weights::ModelSource;

pub use windows::Windows;

/// Which sequence of a pair gives up tokens when the pair is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Truncation {
    /// Take from the longer sequence, one token at a time (transformers' default).
    #[default]
    LongestFirst,
    /// Only the first sequence.
    OnlyFirst,
    /// Only the second sequence (question answering's context).
    OnlySecond,
}

/// How to encode one text or pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// Longest encoding, special tokens included; None = no truncation.
    pub max_length: Option<usize>,
    /// Which side is truncated.
    pub truncation: Truncation,
    /// Tokens shared by consecutive overflowing windows.
    pub stride: usize,
    /// Return every window instead of only the first.
    pub overflow: bool,
    /// Cut tokens from the start of a sequence instead of its end (tokenizers'
    /// `TruncationDirection::Left`; not with `overflow`).
    pub from_left: bool,
}

/// One encoded window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids (0 for the first sequence, 1 for the second).
    pub type_ids: Vec<u32>,
    /// Token strings.
    pub tokens: Vec<String>,
    /// (start, end) character offsets into the text the token came from; (0, 0) for
    /// special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// Which input sequence each token belongs to (None for special tokens).
    pub sequence_ids: Vec<Option<usize>>,
    /// Index of the word each token belongs to, within its sequence.
    pub word_ids: Vec<Option<u32>>,
    /// True when the input did not fit in `max_length`: tokens were cut (or moved to
    /// further windows).
    pub truncated: bool,
}

impl Encoding {
    fn from_tk(e: &tokenizers::Encoding) -> Self {
        Encoding {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            tokens: e.get_tokens().to_vec(),
            offsets: e.get_offsets().to_vec(),
            sequence_ids: e.get_sequence_ids(),
            word_ids: e.get_word_ids().to_vec(),
            truncated: false,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for an encoding without tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The special tokens of a BERT vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// [CLS] id.
    pub cls: u32,
    /// [SEP] id.
    pub sep: u32,
    /// [PAD] id.
    pub pad: u32,
    /// [UNK] id.
    pub unk: u32,
    /// [MASK] id, if the vocabulary has one.
    pub mask: Option<u32>,
    /// The mask token's text.
    pub mask_token: String,
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    do_lower_case: Option<bool>,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default)]
    tokenize_chinese_chars: Option<bool>,
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    unk_token: Option<TokenField>,
    #[serde(default)]
    sep_token: Option<TokenField>,
    #[serde(default)]
    pad_token: Option<TokenField>,
    #[serde(default)]
    cls_token: Option<TokenField>,
    #[serde(default)]
    mask_token: Option<TokenField>,
    #[serde(default)]
    clean_up_tokenization_spaces: Option<bool>,
}

/// A special token given as a string or as an AddedToken object.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum TokenField {
    Text(String),
    Object { content: String },
}

impl TokenField {
    fn text(self) -> String {
        match self {
            TokenField::Text(t) | TokenField::Object { content: t } => t,
        }
    }
}

/// A BERT tokenizer (Send + Sync; encode from many threads).
pub struct BertTokenizer {
    base: Tokenizer,
    specials: SpecialTokens,
    model_max_length: Option<usize>,
    /// tokenizer_config.json's `clean_up_tokenization_spaces` (transformers' default when
    /// it is absent: false).
    clean_up: bool,
}

fn tk_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::checkpoint(path, format!("tokenizer: {e}"))
}

impl BertTokenizer {
    /// Loads the tokenizer of a checkpoint folder: tokenizer.json, else vocab.txt with
    /// tokenizer_config.json (and special_tokens_map.json).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = dir.join(name);
            match path.is_file() {
                true => std::fs::read(&path)
                    .map(Some)
                    .map_err(|e| Error::io(&path, e)),
                false => Ok(None),
            }
        };
        Self::from_files(&read, dir)
    }

    /// Loads the tokenizer of a model source (folder or packed file).
    pub fn from_source(source: &ModelSource) -> Result<Self> {
        Self::from_files(&|name| source.read_file(name), source.path())
    }

    /// Loads from named files supplied by `read`; `origin` names them in errors.
    fn from_files(read: &dyn Fn(&str) -> Result<Option<Vec<u8>>>, origin: &Path) -> Result<Self> {
        let dir = origin;
        let config = read_json::<TokenizerConfig>(read, "tokenizer_config.json", origin)?
            .unwrap_or_default();
        let map =
            read_json::<HashMap<String, TokenField>>(read, "special_tokens_map.json", origin)?
                .unwrap_or_default();
        let special = |field: Option<TokenField>, key: &str, default: &str| -> String {
            map.get(key)
                .cloned()
                .or(field)
                .map_or_else(|| default.to_string(), TokenField::text)
        };
        let names = [
            special(config.cls_token.clone(), "cls_token", "[CLS]"),
            special(config.sep_token.clone(), "sep_token", "[SEP]"),
            special(config.pad_token.clone(), "pad_token", "[PAD]"),
            special(config.unk_token.clone(), "unk_token", "[UNK]"),
            special(config.mask_token.clone(), "mask_token", "[MASK]"),
        ];
        let mut base = if let Some(json) = read("tokenizer.json")? {
            Tokenizer::from_bytes(&json).map_err(|e| tk_err(origin, e))?
        } else if let Some(vocab) = read("vocab.txt")? {
            from_vocab(&vocab, origin, &config, &names)?
        } else {
            return Err(Error::checkpoint(
                origin,
                "no tokenizer: expected tokenizer.json or vocab.txt (with tokenizer_config.json)",
            ));
        };
        base.with_truncation(None).map_err(|e| tk_err(dir, e))?;
        base.with_padding(None);
        let id = |name: &str| {
            base.token_to_id(name).ok_or_else(|| {
                Error::checkpoint(
                    dir,
                    format!("tokenizer: special token {name} is not in the vocabulary"),
                )
            })
        };
        let specials = SpecialTokens {
            cls: id(&names[0])?,
            sep: id(&names[1])?,
            pad: id(&names[2])?,
            unk: id(&names[3])?,
            mask: base.token_to_id(&names[4]),
            mask_token: names[4].clone(),
        };
        // transformers writes a huge sentinel when a model sets no limit.
        let model_max_length = config
            .model_max_length
            .filter(|&n| n > 0.0 && n < 1e9)
            .map(|n| n as usize);
        Ok(BertTokenizer {
            base,
            specials,
            model_max_length,
            clean_up: config.clean_up_tokenization_spaces.unwrap_or(false),
        })
    }

    /// The special token ids.
    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// tokenizer_config.json's model_max_length, when it sets a real limit.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.base.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.base.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.base.id_to_token(id)
    }

    /// Ids to text, as transformers' `decode`: the tokenizer's decoder (WordPiece
    /// joining), then, when the tokenizer config asks for it, transformers' clean-up of
    /// the spaces over the whole text (`don ' t` -> `don't`, `children ' s` ->
    /// `children's`), which the decoder's per-token clean-up cannot do.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .base
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Input(format!("cannot decode ids: {e}")))?;
        Ok(match self.clean_up {
            true => clean_up_tokenization(&text),
            false => text,
        })
    }

    /// Joins tokens into text as transformers' `convert_tokens_to_string` does (the
    /// tokenizer's decoder: `##` pieces glued, spaces cleaned up).
    pub fn tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        use tokenizers::Decoder;
        match self.base.get_decoder() {
            Some(decoder) => decoder
                .decode(tokens.to_vec())
                .map_err(|e| Error::Input(format!("cannot join tokens: {e}"))),
            None => Ok(tokens.join(" ").replace(" ##", "").trim().to_string()),
        }
    }

    /// Tokens of a text without special tokens or truncation (for targets and words).
    pub fn tokenize(&self, text: &str) -> Result<Encoding> {
        let e = self
            .base
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
        Ok(Encoding::from_tk(&e))
    }

    /// Encodes a text (or pair) with special tokens. Returns the first window, then the
    /// overflowing ones when `opts.overflow` is set.
    pub fn encode(
        &self,
        text: &str,
        pair: Option<&str>,
        opts: EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        let windows = self.windows(text, pair, opts)?;
        let n = if opts.overflow { windows.len() } else { 1 };
        (0..n).map(|i| windows.get(i)).collect()
    }

    /// The windows of a text (or pair), each encoded when asked for: what `encode`
    /// returns, without holding every window at once. Memory is bounded by the tokens
    /// kept, whatever the length of the text.
    pub fn windows(
        &self,
        text: &str,
        pair: Option<&str>,
        opts: EncodeOptions,
    ) -> Result<Windows<'_>> {
        // An empty pair is no pair, as in transformers.
        let pair = pair.filter(|p| !p.is_empty());
        Windows::new(&self.base, text, pair, opts)
    }

    /// As [`BertTokenizer::windows`], tokenizing `piece_bytes` of text at a time (for
    /// tests of the piecewise tokenization).
    #[doc(hidden)]
    pub fn windows_in_pieces(
        &self,
        text: &str,
        pair: Option<&str>,
        opts: EncodeOptions,
        piece_bytes: usize,
    ) -> Result<Windows<'_>> {
        let pair = pair.filter(|p| !p.is_empty());
        Windows::with_pieces(&self.base, text, pair, opts, piece_bytes)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    read: &dyn Fn(&str) -> Result<Option<Vec<u8>>>,
    name: &str,
    origin: &Path,
) -> Result<Option<T>> {
    crate::weights::source::parse_json(read(name)?, &origin.join(name))
}

/// Builds what transformers' BertTokenizerFast builds from a vocab.txt.
fn from_vocab(
    vocab: &[u8],
    origin: &Path,
    config: &TokenizerConfig,
    names: &[String; 5],
) -> Result<Tokenizer> {
    let text = std::str::from_utf8(vocab).map_err(|_| tk_err(origin, "vocab.txt is not UTF-8"))?;
    // One token per line, ids by line number, as WordPiece's own reader does.
    let map: ahash::AHashMap<String, u32> = text
        .lines()
        .enumerate()
        .map(|(i, line)| (line.trim_end().to_string(), i as u32))
        .collect();
    let model = WordPiece::builder()
        .vocab(map)
        .unk_token(names[3].clone())
        .build()
        .map_err(|e| tk_err(origin, e))?;
    let mut tk = Tokenizer::new(model);
    tk.with_normalizer(Some(BertNormalizer::new(
        true,
        config.tokenize_chinese_chars.unwrap_or(true),
        config.strip_accents,
        config.do_lower_case.unwrap_or(true),
    )));
    tk.with_pre_tokenizer(Some(BertPreTokenizer));
    let id = |name: &str| {
        tk.token_to_id(name)
            .ok_or_else(|| tk_err(origin, format!("{name} is not in vocab.txt")))
    };
    let (cls, sep) = (id(&names[0])?, id(&names[1])?);
    tk.with_post_processor(Some(BertProcessing::new(
        (names[1].clone(), sep),
        (names[0].clone(), cls),
    )));
    tk.with_decoder(Some(WordPieceDecoder::default()));
    let added: Vec<AddedToken> = names
        .iter()
        .filter(|n| tk.token_to_id(n).is_some())
        .map(|n| AddedToken::from(n.clone(), true))
        .collect();
    tk.add_special_tokens(&added);
    Ok(tk)
}

/// transformers' `clean_up_tokenization`: spaces before punctuation and inside English
/// contractions removed, the replacements in its order.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
}
