//! Truncation and overflowing windows, as transformers' fast tokenizers compute them,
//! over texts tokenized piece by piece ([`super::pieces`]).
//!
//! The lengths follow the tokenizers crate's `truncate_encodings` (longest_first,
//! only_first, only_second, windows of `max_len` tokens every `max_len - stride`), but
//! each window is built on its own from the kept tokens, with the tokenizer's post
//! processor adding the special tokens. Nothing grows with the product of the two texts'
//! lengths, and a text that will be cut is tokenized only as far as is kept.

use std::ops::Range;

use tokenizers::PostProcessor;
use tokenizers::Tokenizer;

use super::pieces::{self, Keep, Pieces};
use super::{EncodeOptions, Encoding, Truncation};
use crate::error::{Error, Result};

/// Every window of one text (or pair), each built when asked for.
#[derive(Debug)]
pub struct Windows<'t> {
    base: &'t Tokenizer,
    first: Pieces,
    second: Option<Pieces>,
    /// Per window: the tokens of the first text and of the second.
    spans: Spans,
    /// Whether tokens were cut (or moved to later windows).
    truncated: bool,
}

/// The limits longest_first puts on a pair of `n1` and `n2` tokens sharing `max`: the
/// tokenizers crate's rule. The shorter keeps all it can (the longer gets the rest, but
/// never less than the shorter); when that still overflows, each gets half, and the
/// longer the odd token.
fn longest_first(n1: usize, n2: usize, max: usize) -> (usize, usize) {
    let swap = n1 > n2;
    let mut short = n1.min(n2);
    let mut long = match short > max {
        true => short,
        false => short.max(max - short),
    };
    if short + long > max {
        short = max / 2;
        long = short + max % 2;
    }
    match swap {
        true => (long, short),
        false => (short, long),
    }
}

/// A single window.
fn one(tokens: Range<usize>) -> Vec<Range<usize>> {
    std::iter::once(tokens).collect()
}

/// Windows of `max_len` tokens every `max_len - stride` over `len` tokens (one window
/// when they fit).
fn window_ranges(len: usize, max_len: usize, stride: usize) -> Result<Vec<Range<usize>>> {
    if len <= max_len {
        return Ok(one(0..len));
    }
    if stride >= max_len {
        return Err(Error::Input(format!(
            "stride {stride} must be smaller than the {max_len} tokens a window holds \
             (max_length less the special tokens and the other text)"
        )));
    }
    let step = max_len - stride;
    let mut out = Vec::with_capacity(len.div_ceil(step));
    let mut start = 0;
    loop {
        let stop = (start + max_len).min(len);
        out.push(start..stop);
        if stop == len {
            return Ok(out);
        }
        start += step;
    }
}

/// What lays out one input's windows: the tokenizer, the token budget left by the
/// special tokens and the options.
struct Layout<'t> {
    base: &'t Tokenizer,
    max: usize,
    opts: EncodeOptions,
    piece_bytes: usize,
}

impl<'t> Layout<'t> {
    fn tokenize(&self, text: &str, keep: Keep) -> Result<Pieces> {
        pieces::tokenize(self.base, text, keep, self.piece_bytes)
    }

    /// What to keep of a text that gets at most `room` tokens a window (all of it when
    /// the end is kept: the cut is counted from there).
    fn keep(&self, room: usize) -> Keep {
        match self.opts.overflow || self.opts.from_left {
            true => Keep::All,
            false => Keep::First(room),
        }
    }

    fn windows(
        &self,
        first: Pieces,
        second: Option<Pieces>,
        spans: Spans,
        truncated: bool,
    ) -> Windows<'t> {
        // From the left: each kept span `0..k` becomes the last k tokens.
        let spans = match self.opts.from_left {
            false => spans,
            true => {
                let last = |r: Range<usize>, n: usize| n - r.len()..n;
                let n2 = second.as_ref().map_or(0, |s| s.ids.len());
                spans
                    .into_iter()
                    .map(|(a, b)| (last(a, first.ids.len()), b.map(|b| last(b, n2))))
                    .collect()
            }
        };
        Windows {
            base: self.base,
            first,
            second,
            spans,
            truncated,
        }
    }

    fn single(&self, text: &str) -> Result<Windows<'t>> {
        let (max, opts) = (self.max, self.opts);
        let first = self.tokenize(text, self.keep(max))?;
        let cut = !first.counted || first.total > max;
        if cut && opts.truncation == Truncation::OnlySecond {
            return Err(Error::Input(
                "only_second truncation needs a second text".into(),
            ));
        }
        let ranges = match opts.overflow {
            true => window_ranges(first.ids.len(), max, opts.stride)?,
            false => one(0..first.ids.len().min(max)),
        };
        let spans = ranges.into_iter().map(|r| (r, None)).collect();
        Ok(self.windows(first, None, spans, cut))
    }

    /// only_first or only_second: the other text is kept whole in every window.
    fn only_one(&self, text: &str, pair: &str) -> Result<Windows<'t>> {
        let (max, opts) = (self.max, self.opts);
        let only_first = opts.truncation == Truncation::OnlyFirst;
        let (truncated, untouched) = if only_first {
            (text, pair)
        } else {
            (pair, text)
        };
        // The untouched text keeps every token, so it must leave room for the other.
        let other = self.tokenize(untouched, Keep::First(max))?;
        let room = max.saturating_sub(other.total);
        let cut = self.tokenize(truncated, self.keep(room.max(1)))?;
        let needs_cut = !other.counted || !cut.counted || other.total + cut.total > max;
        if needs_cut && (room == 0 || !other.counted) {
            return Err(Error::Input(format!(
                "the {} text alone fills the {max} tokens of max_length: nothing is left \
                 to keep of the other",
                if only_first { "second" } else { "first" }
            )));
        }
        let ranges = match (needs_cut, opts.overflow) {
            (false, _) => one(0..cut.ids.len()),
            (true, true) => window_ranges(cut.ids.len(), room, opts.stride)?,
            (true, false) => one(0..cut.ids.len().min(room)),
        };
        let whole = 0..other.ids.len();
        let spans = ranges
            .into_iter()
            .map(|r| match only_first {
                true => (r, Some(whole.clone())),
                false => (whole.clone(), Some(r)),
            })
            .collect();
        Ok(match only_first {
            true => self.windows(cut, Some(other), spans, needs_cut),
            false => self.windows(other, Some(cut), spans, needs_cut),
        })
    }

    fn longest_first(&self, text: &str, pair: &str) -> Result<Windows<'t>> {
        let max = self.max;
        if self.opts.overflow {
            return Err(Error::Unsupported(
                "overflowing windows of a pair need only_first or only_second truncation".into(),
            ));
        }
        let (mut first, mut second) = (
            self.tokenize(text, self.keep(max))?,
            self.tokenize(pair, self.keep(max))?,
        );
        // Both longer than max: which is longer decides who gets the odd token.
        if !first.counted && !second.counted && max % 2 == 1 {
            first = self.tokenize(text, Keep::FirstCountAll(max))?;
            second = self.tokenize(pair, Keep::FirstCountAll(max))?;
        }
        let (n1, n2) = (first.total, second.total);
        let truncated = !first.counted || !second.counted || n1 + n2 > max;
        let (k1, k2) = match truncated {
            true => longest_first(n1, n2, max),
            false => (n1, n2),
        };
        let spans = vec![(
            0..k1.min(first.ids.len()),
            Some(0..k2.min(second.ids.len())),
        )];
        Ok(self.windows(first, Some(second), spans, truncated))
    }
}

/// Per window: the tokens of the first text and of the second.
type Spans = Vec<(Range<usize>, Option<Range<usize>>)>;

impl<'t> Windows<'t> {
    /// Tokenizes `text` (and `pair`) and lays out its windows under `opts`.
    pub fn new(
        base: &'t Tokenizer,
        text: &str,
        pair: Option<&str>,
        opts: EncodeOptions,
    ) -> Result<Self> {
        Self::with_pieces(base, text, pair, opts, pieces::PIECE_BYTES)
    }

    /// As [`Windows::new`], tokenizing `piece_bytes` of text at a time.
    pub fn with_pieces(
        base: &'t Tokenizer,
        text: &str,
        pair: Option<&str>,
        opts: EncodeOptions,
        piece_bytes: usize,
    ) -> Result<Self> {
        let Some(max_length) = opts.max_length else {
            let whole = Layout {
                base,
                max: usize::MAX,
                opts,
                piece_bytes,
            };
            let first = whole.tokenize(text, Keep::All)?;
            let second = pair.map(|p| whole.tokenize(p, Keep::All)).transpose()?;
            let spans = vec![(0..first.ids.len(), second.as_ref().map(|s| 0..s.ids.len()))];
            return Ok(whole.windows(first, second, spans, false));
        };
        let specials = base
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(pair.is_some()));
        let max = max_length
            .checked_sub(specials)
            .filter(|&m| m > 0)
            .ok_or_else(|| {
                Error::Input(format!(
                    "max_length {max_length} leaves no room for text beside {specials} \
                     special tokens"
                ))
            })?;
        if opts.from_left && opts.overflow {
            return Err(Error::Unsupported(
                "overflowing windows cut from the left are not supported (truncation from \
                 the left keeps one window)"
                    .into(),
            ));
        }
        let layout = Layout {
            base,
            max,
            opts,
            piece_bytes,
        };
        match (pair, opts.truncation) {
            (None, _) => layout.single(text),
            (Some(pair), Truncation::LongestFirst) => layout.longest_first(text, pair),
            (Some(pair), _) => layout.only_one(text, pair),
        }
    }

    /// Number of windows (at least 1).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Always false: an input has at least one window.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Window `i`, with the special tokens; the first says whether tokens were cut.
    pub fn get(&self, i: usize) -> Result<Encoding> {
        let (a, b) = self
            .spans
            .get(i)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("window {i} of {}", self.spans.len())))?;
        let first = self.part(&self.first, a, 0);
        let second = match (&self.second, b) {
            (Some(p), Some(r)) => Some(self.part(p, r, 1)),
            _ => None,
        };
        let e = self
            .base
            .post_process(first, second, true)
            .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
        let mut out = Encoding::from_tk(&e);
        out.truncated = i == 0 && self.truncated;
        Ok(out)
    }

    /// Tokens `r` of one text as the tokenizer's own encoding of that sequence.
    fn part(&self, p: &Pieces, r: Range<usize>, sequence: usize) -> tokenizers::Encoding {
        let n = r.len();
        let tokens = p.ids[r.clone()]
            .iter()
            .map(|&id| self.base.id_to_token(id).unwrap_or_default())
            .collect();
        let mut e = tokenizers::Encoding::new(
            p.ids[r.clone()].to_vec(),
            vec![sequence as u32; n],
            tokens,
            p.words[r.clone()]
                .iter()
                .map(|&w| (w != pieces::NO_WORD).then_some(w))
                .collect(),
            p.offsets[r]
                .iter()
                .map(|&(a, b)| (a as usize, b as usize))
                .collect(),
            vec![0; n],
            vec![1; n],
            Vec::new(),
            Default::default(),
        );
        e.set_sequence_id(sequence);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_follows_the_crates_rule() {
        // (n1, n2, max) -> limits, worked by hand from tokenizers' truncate_encodings.
        for (n1, n2, max, want) in [
            (3, 10, 8, (3, 5)),
            (10, 3, 8, (5, 3)),
            (10, 10, 7, (3, 4)),
            (11, 10, 7, (4, 3)),
            (20, 5, 9, (5, 4)),
            (2, 2, 9, (2, 7)),
        ] {
            assert_eq!(longest_first(n1, n2, max), want, "{n1} {n2} {max}");
        }
    }

    #[test]
    fn windows_step_by_max_less_stride() {
        assert_eq!(window_ranges(5, 8, 2).unwrap(), one(0..5));
        assert_eq!(window_ranges(10, 4, 1).unwrap(), vec![0..4, 3..7, 6..10]);
        assert_eq!(window_ranges(9, 4, 0).unwrap(), vec![0..4, 4..8, 8..9]);
        assert!(window_ranges(9, 4, 4).is_err());
    }
}
