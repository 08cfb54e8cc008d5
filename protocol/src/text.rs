//! Text that could mislead a reader: bidirectional formatting characters
//! (U+202A–U+202E, U+2066–U+2069), which can make `evil\u{202E}gpj.exe` read
//! as `evilexe.jpg`, and strings made only of invisible characters (spaces,
//! zero-width characters, fillers), which look like nothing or like someone
//! else. User ids, room names, attachment file names and emoji refuse both.

/// Bidirectional embeddings, overrides and isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing (or as blank space).
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Why `s` may not name something (`None` if it may): a bidirectional
/// control anywhere, or nothing visible at all.
pub fn misleading(s: &str) -> Option<&'static str> {
    if let Some(c) = s.chars().find(|c| is_bidi_control(*c)) {
        return Some(match c {
            '\u{202E}' => "must not contain a right-to-left override (U+202E)",
            _ => "must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069)",
        });
    }
    if s.chars().all(is_invisible) {
        return Some("must contain a visible character");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_strings_are_caught() {
        assert!(misleading("alice").is_none());
        assert!(misleading("Zoë 🎉").is_none());
        assert!(
            misleading("❤️").is_none(),
            "a variation selector next to a symbol is fine"
        );
        assert!(misleading("evil\u{202E}gpj.exe").is_some());
        assert!(misleading("a\u{2067}b").is_some());
        for blank in [
            "",
            " ",
            "\u{200B}",
            "\u{3164}\u{200D}",
            "\u{2800}",
            "\u{FEFF} ",
        ] {
            assert!(misleading(blank).is_some(), "{blank:?}");
        }
    }
}
