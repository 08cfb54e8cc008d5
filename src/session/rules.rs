//! Field rules for client input, each failure a `bad_request` message that
//! names the field and says why. Control characters other than newline and
//! tab are refused (not stripped), so what is stored is what was sent.

use crate::proto::text::misleading;
use crate::proto::types::{Attachment, MessageKind};

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 100;
/// Longest room description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Longest `local_id`, in bytes.
pub const MAX_LOCAL_ID_LEN: usize = 64;
/// Attachments per message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Longest attachment URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest attachment file name, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Largest image dimension, in pixels.
pub const MAX_DIMENSION: u32 = 65_535;
/// Longest emoji (a `:shortcode:` or up to 8 characters of symbols).
pub const MAX_EMOJI_LEN: usize = 64;
/// Longest invite code accepted, in bytes.
pub const MAX_INVITE_LEN: usize = 64;

fn no_controls(field: &str, s: &str, allow_newlines: bool) -> Result<(), String> {
    match s
        .chars()
        .find(|c| c.is_control() && !(allow_newlines && (*c == '\n' || *c == '\t')))
    {
        Some(c) => Err(format!(
            "{field}: control character U+{:04X} is not allowed{}",
            c as u32,
            if allow_newlines {
                " (only newline and tab are)"
            } else {
                ""
            }
        )),
        None => Ok(()),
    }
}

/// A message body: at most `max` characters, no control characters but newline and tab.
pub fn body(field: &str, s: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if s.is_empty() && !allow_empty {
        return Err(format!("{field}: must not be empty"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(format!("{field}: {chars} characters, the limit is {max}"));
    }
    no_controls(field, s, true)
}

/// A room name: trimmed, 1..=100 characters, single line.
pub fn room_name(s: &str) -> Result<String, String> {
    let name = s.trim().to_string();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_ROOM_NAME_CHARS {
        return Err(format!(
            "name: must be 1 to {MAX_ROOM_NAME_CHARS} characters"
        ));
    }
    no_controls("name", &name, false)?;
    if let Some(why) = misleading(&name) {
        return Err(format!("name: {why}"));
    }
    Ok(name)
}

/// A `public_rooms` prefix: at most a room name's length (longer matches
/// nothing), single line. Bounded here so no client string reaches the
/// store's key limits.
pub fn directory_prefix(s: &str) -> Result<(), String> {
    let chars = s.chars().count();
    if chars > MAX_ROOM_NAME_CHARS {
        return Err(format!(
            "prefix: {chars} characters, the limit is {MAX_ROOM_NAME_CHARS}"
        ));
    }
    no_controls("prefix", s, false)
}

pub fn description(s: &str) -> Result<(), String> {
    let chars = s.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "description: {chars} characters, the limit is {MAX_DESCRIPTION_CHARS}"
        ));
    }
    no_controls("description", s, true)
}

pub fn local_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_LOCAL_ID_LEN {
        return Err(format!("local_id: must be 1 to {MAX_LOCAL_ID_LEN} bytes"));
    }
    no_controls("local_id", s, false)
}

fn mime_ok(m: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    m.len() <= 127 && m.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

/// Kind and attachments together: text carries none; file and image carry 1..=10;
/// an image's attachments are all `image/*`.
pub fn attachments(kind: MessageKind, list: &[Attachment], max_bytes: u64) -> Result<(), String> {
    match kind {
        MessageKind::Text if !list.is_empty() => {
            return Err("attachments: text messages carry none (use kind file or image)".into())
        }
        MessageKind::File | MessageKind::Image if list.is_empty() => {
            return Err("attachments: file and image messages need at least one".into())
        }
        _ => {}
    }
    if list.len() > MAX_ATTACHMENTS {
        return Err(format!("attachments: at most {MAX_ATTACHMENTS}"));
    }
    for (i, a) in list.iter().enumerate() {
        let f = |name: &str| format!("attachments[{i}].{name}");
        if a.url.len() > MAX_URL_LEN
            || !(a.url.starts_with("https://") || a.url.starts_with("http://"))
        {
            return Err(format!(
                "{}: must be an http(s) URL of at most {MAX_URL_LEN} bytes",
                f("url")
            ));
        }
        no_controls(&f("url"), &a.url, false)?;
        let chars = a.name.chars().count();
        if chars == 0 || chars > MAX_FILE_NAME_CHARS {
            return Err(format!(
                "{}: must be 1 to {MAX_FILE_NAME_CHARS} characters",
                f("name")
            ));
        }
        no_controls(&f("name"), &a.name, false)?;
        if let Some(why) = misleading(&a.name) {
            return Err(format!("{}: {why}", f("name")));
        }
        if !mime_ok(&a.mime) {
            return Err(format!("{}: must be a lowercase type/subtype", f("mime")));
        }
        if kind == MessageKind::Image && !a.mime.starts_with("image/") {
            return Err(format!(
                "{}: image messages carry image/* attachments",
                f("mime")
            ));
        }
        if a.size > max_bytes {
            return Err(format!(
                "{}: {} bytes, the limit is {max_bytes}",
                f("size"),
                a.size
            ));
        }
        for (name, d) in [("width", a.width), ("height", a.height)] {
            if d.is_some_and(|d| d == 0 || d > MAX_DIMENSION) {
                return Err(format!("{}: must be 1 to {MAX_DIMENSION}", f(name)));
            }
        }
    }
    Ok(())
}

/// An emoji: `:shortcode:` (lowercase letters, digits, `_ + -`), or 1..=8 characters
/// with no letters, digits, spaces or control characters (Unicode emoji, with
/// modifiers and joiners).
pub fn emoji(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_EMOJI_LEN {
        return Err(format!("emoji: must be 1 to {MAX_EMOJI_LEN} bytes"));
    }
    if let Some(why) = misleading(s) {
        return Err(format!("emoji: {why}"));
    }
    if let Some(code) = s.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
        if !code.is_empty()
            && code.len() <= 32
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b))
        {
            return Ok(());
        }
        return Err("emoji: a shortcode is :name: with a-z 0-9 _ + - (up to 32)".into());
    }
    let ok = s.chars().count() <= 8
        && s.chars().all(|c| {
            !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control() && !c.is_ascii()
        });
    if ok {
        Ok(())
    } else {
        Err("emoji: must be an emoji (up to 8 characters) or a :shortcode:".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(mime: &str) -> Attachment {
        Attachment {
            url: "https://cdn.example/x".into(),
            name: "x.png".into(),
            mime: mime.into(),
            size: 10,
            width: Some(5),
            height: None,
        }
    }

    #[test]
    fn bodies_refuse_controls_but_keep_newlines() {
        assert!(body("body", "line 1\nline\t2", 100, false).is_ok());
        assert!(body("body", "bell\u{7}", 100, false)
            .unwrap_err()
            .contains("U+0007"));
        assert!(body("body", "", 100, false).is_err());
        assert!(body("body", "", 100, true).is_ok());
    }

    #[test]
    fn attachments_follow_the_kind() {
        assert!(attachments(MessageKind::Text, &[], 100).is_ok());
        assert!(attachments(MessageKind::Text, &[att("image/png")], 100).is_err());
        assert!(attachments(MessageKind::Image, &[att("image/png")], 100).is_ok());
        assert!(
            attachments(MessageKind::Image, &[att("application/pdf")], 100)
                .unwrap_err()
                .contains("mime")
        );
        assert!(attachments(MessageKind::File, &[att("Application/PDF")], 100).is_err());
        assert!(attachments(
            MessageKind::File,
            &[Attachment {
                size: 101,
                ..att("application/pdf")
            }],
            100
        )
        .unwrap_err()
        .contains("size"));
        assert!(attachments(
            MessageKind::File,
            &[Attachment {
                url: "ftp://x".into(),
                ..att("a/b")
            }],
            100
        )
        .unwrap_err()
        .contains("url"));
        assert!(attachments(MessageKind::File, &vec![att("a/b"); 11], 100).is_err());
    }

    #[test]
    fn emoji_rules() {
        for ok in ["👍", "❤️", "👍🏽", "👩‍👩‍👧", ":thumbs_up:", ":+1:"] {
            assert!(emoji(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "ok",
            " ",
            ":Bad:",
            "::",
            "👍 👍",
            "😀😀😀😀😀😀😀😀😀",
            "\u{200D}",
            "\u{FE0F}",
            "👍\u{202E}",
        ] {
            assert!(emoji(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_single_lines() {
        assert_eq!(room_name("  General ").unwrap(), "General");
        assert!(room_name("   ").is_err());
        assert!(room_name("a\nb").is_err());
        assert!(room_name("\u{200B}\u{200B}").is_err());
        assert!(room_name("team\u{202E}lanretni").is_err());
    }
}
