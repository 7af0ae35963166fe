//! Character offsets into long texts.

/// Byte positions of a text's characters, found from a checkpoint every [`Self::EVERY`]
/// characters (a few bytes per hundred characters, whatever the text's length).
pub(super) struct CharIndex<'t> {
    text: &'t str,
    /// Byte position of character i * EVERY.
    marks: Vec<usize>,
}

impl<'t> CharIndex<'t> {
    const EVERY: usize = 64;

    pub(super) fn new(text: &'t str) -> Self {
        let marks = text
            .char_indices()
            .step_by(Self::EVERY)
            .map(|(b, _)| b)
            .collect();
        CharIndex { text, marks }
    }

    /// The byte position of character `c` (the text's length past its end).
    pub(super) fn byte(&self, c: usize) -> usize {
        let Some(&mark) = self.marks.get(c / Self::EVERY) else {
            return self.text.len();
        };
        self.text[mark..]
            .char_indices()
            .nth(c % Self::EVERY)
            .map_or(self.text.len(), |(b, _)| mark + b)
    }

    /// Characters `start..end` (empty when end <= start).
    pub(super) fn slice(&self, start: usize, end: usize) -> &'t str {
        let a = self.byte(start);
        &self.text[a..self.byte(end).max(a)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_by_characters() {
        let text = "é".repeat(100) + "abc" + &"北".repeat(70);
        let index = CharIndex::new(&text);
        let chars: Vec<char> = text.chars().collect();
        for (a, b) in [
            (0, 0),
            (0, 5),
            (63, 65),
            (99, 103),
            (100, 101),
            (150, 173),
            (170, 500),
        ] {
            let want: String = chars[a.min(chars.len())..b.min(chars.len())]
                .iter()
                .collect();
            assert_eq!(index.slice(a, b), want, "{a}..{b}");
        }
        assert_eq!(index.slice(5, 2), "");
    }
}
