//! A cheap, non-recursive structural check of one MessagePack payload before
//! serde sees it: exactly one value, a map at the top with string keys,
//! nesting at most `MAX_DEPTH`, declared lengths that fit in the payload, and
//! no trailing bytes. This bounds the work a hostile frame can cause and gives
//! clear `bad_request` messages.

use rmp::Marker;

/// Deepest nesting of maps/arrays accepted (the top-level map is depth 1).
pub const MAX_DEPTH: usize = 16;

pub fn check(payload: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    let first = *payload.first().ok_or("empty frame")?;
    if !matches!(
        Marker::from_u8(first),
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32
    ) {
        return Err("frame must be a MessagePack map".into());
    }
    // Items left to read in each open container; a map of n entries is 2n items.
    let mut stack: Vec<u64> = Vec::with_capacity(8);
    loop {
        while stack.last() == Some(&0) {
            stack.pop();
        }
        if pos > 0 && stack.is_empty() {
            break;
        }
        // In the top-level map, items alternate key, value: keys come when an even count is left.
        let key_turn = stack.len() == 1 && stack[0] % 2 == 0;
        if let Some(left) = stack.last_mut() {
            *left -= 1;
        }
        let marker_byte = *payload.get(pos).ok_or("truncated frame")?;
        pos += 1;
        let marker = Marker::from_u8(marker_byte);
        if key_turn
            && !matches!(
                marker,
                Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32
            )
        {
            return Err("map keys must be strings".into());
        }
        let read_len = |pos: &mut usize, n: usize| -> Result<u64, String> {
            let bytes = payload.get(*pos..*pos + n).ok_or("truncated frame")?;
            *pos += n;
            Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        };
        let skip = |pos: &mut usize, n: u64| -> Result<(), String> {
            let end = (*pos as u64)
                .checked_add(n)
                .filter(|end| *end <= payload.len() as u64)
                .ok_or("truncated frame")?;
            *pos = end as usize;
            Ok(())
        };
        let container = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                None
            }
            Marker::U8 | Marker::I8 => {
                skip(&mut pos, 1)?;
                None
            }
            Marker::U16 | Marker::I16 => {
                skip(&mut pos, 2)?;
                None
            }
            Marker::U32 | Marker::I32 | Marker::F32 => {
                skip(&mut pos, 4)?;
                None
            }
            Marker::U64 | Marker::I64 | Marker::F64 => {
                skip(&mut pos, 8)?;
                None
            }
            Marker::FixStr(n) => {
                skip(&mut pos, u64::from(n))?;
                None
            }
            Marker::Str8 | Marker::Bin8 => {
                let n = read_len(&mut pos, 1)?;
                skip(&mut pos, n)?;
                None
            }
            Marker::Str16 | Marker::Bin16 => {
                let n = read_len(&mut pos, 2)?;
                skip(&mut pos, n)?;
                None
            }
            Marker::Str32 | Marker::Bin32 => {
                let n = read_len(&mut pos, 4)?;
                skip(&mut pos, n)?;
                None
            }
            Marker::FixExt1 => skip(&mut pos, 2).map(|_| None)?,
            Marker::FixExt2 => skip(&mut pos, 3).map(|_| None)?,
            Marker::FixExt4 => skip(&mut pos, 5).map(|_| None)?,
            Marker::FixExt8 => skip(&mut pos, 9).map(|_| None)?,
            Marker::FixExt16 => skip(&mut pos, 17).map(|_| None)?,
            Marker::Ext8 => {
                let n = read_len(&mut pos, 1)?;
                skip(&mut pos, n + 1)?;
                None
            }
            Marker::Ext16 => {
                let n = read_len(&mut pos, 2)?;
                skip(&mut pos, n + 1)?;
                None
            }
            Marker::Ext32 => {
                let n = read_len(&mut pos, 4)?;
                skip(&mut pos, n + 1)?;
                None
            }
            Marker::FixArray(n) => Some(u64::from(n)),
            Marker::Array16 => Some(read_len(&mut pos, 2)?),
            Marker::Array32 => Some(read_len(&mut pos, 4)?),
            Marker::FixMap(n) => Some(2 * u64::from(n)),
            Marker::Map16 => Some(2 * read_len(&mut pos, 2)?),
            Marker::Map32 => Some(2 * read_len(&mut pos, 4)?),
            Marker::Reserved => return Err("invalid MessagePack marker 0xc1".into()),
        };
        if let Some(items) = container {
            // Every item takes at least one byte: a larger declared count is a lie.
            if items > (payload.len() - pos) as u64 {
                return Err("declared collection length exceeds the frame".into());
            }
            if stack.len() + 1 > MAX_DEPTH {
                return Err(format!("nesting deeper than {MAX_DEPTH}"));
            }
            stack.push(items);
        }
    }
    if pos != payload.len() {
        return Err("trailing bytes after the map".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<T: serde::Serialize>(v: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(v).unwrap()
    }

    #[test]
    fn accepts_maps_with_string_keys() {
        let v = serde_json::json!({"t": "send", "id": 7, "nested": {"a": [1, 2, {"b": null}]}, "f": 1.5});
        check(&named(&v)).unwrap();
        check(&named(&serde_json::json!({}))).unwrap();
    }

    #[test]
    fn rejects_non_maps_and_bad_shapes() {
        assert!(check(&[]).is_err());
        assert!(check(&named(&serde_json::json!([1, 2]))).is_err());
        assert!(check(&[0x81, 0x01, 0x02])
            .unwrap_err()
            .contains("keys must be strings"));
        assert!(check(&[0x81, 0xa1, b't'])
            .unwrap_err()
            .contains("truncated"));
        assert!(check(&[0x80, 0x00]).unwrap_err().contains("trailing"));
        assert!(check(&[0x81, 0xa1, b't', 0xc1]).is_err());
        // A map32 claiming 4 billion entries in a 5-byte frame.
        assert!(check(&[0xdf, 0xff, 0xff, 0xff, 0xff])
            .unwrap_err()
            .contains("exceeds"));
    }

    #[test]
    fn nested_keys_may_be_anything_but_depth_is_capped() {
        // {"a": {1: 2}} is fine: only top-level keys must be strings.
        check(&[0x81, 0xa1, b'a', 0x81, 0x01, 0x02]).unwrap();
        let mut deep = vec![0x81, 0xa1, b'a'];
        deep.extend(std::iter::repeat_n(0x91, 100));
        deep.push(0x00);
        assert!(check(&deep).unwrap_err().contains("nesting"));
    }
}
