//! A small JSON writer that produces the reference's wire text.
//!
//! The reference serializes with Python's `json.dumps`: `", "` and `": "` separators, non-ASCII
//! escaped as `\uXXXX`, floats in Python's shortest round-trip repr, and the non-standard tokens
//! `NaN`, `Infinity` and `-Infinity` that the LOVE-manager passes through and the frontend
//! patches. serde_json cannot write those tokens, and building a `serde_json::Value` per sample
//! would cost more than the conversion itself, so messages are written directly.

use std::fmt::Write as _;

/// Append `s` as a JSON string literal (with quotes), escaping like Python's `ensure_ascii`.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i < start {
            continue; // inside a multi-byte character already written
        }
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f | 0x7f..=0xff => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => {
                out.push_str(e);
                start = i + 1;
            }
            None if b < 0x80 => {
                let _ = write!(out, "\\u{:04x}", b);
                start = i + 1;
            }
            None => {
                let ch = s[i..].chars().next().expect("char boundary");
                let mut buf = [0u16; 2];
                for unit in ch.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
                start = i + ch.len_utf8();
            }
        }
    }
    if start < s.len() {
        out.push_str(&s[start..]);
    }
    out.push('"');
}

/// Append a float as Python's `repr` would write it (`0.1`, `2.0`, `1e+16`, `1e-05`, `NaN`).
pub fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // ryu gives the shortest round-trip digits, but switches notation at other thresholds
    // than Python (ryu: `0.00001`, Python: `1e-05`), so take its digits and lay them out the
    // way Python's `float_repr_style = 'short'` does: with the value written 0.DIGITS x 10^e,
    // fixed notation when -4 < e <= 16, else `D.IGITSe+XX` with at least two exponent digits.
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    let magnitude = v.abs();
    if (1e-4..1e16).contains(&magnitude) {
        // Both write fixed notation here, identically (`0.0001`, `2.0`, `123.456`).
        out.push_str(text);
        return;
    }
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = match text.find('e') {
        Some(p) => (&text[..p], text[p + 1..].parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = [0u8; 40];
    let mut n = 0usize;
    for &b in int_part.as_bytes().iter().chain(frac_part.as_bytes()) {
        if n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    let mut decpt = int_part.len() as i32 + exp;
    let lead = digits[..n].iter().take_while(|&&b| b == b'0').count();
    decpt -= lead as i32;
    let mut d = &digits[lead..n];
    while let [rest @ .., b'0'] = d {
        d = rest;
    }
    // Safe: only ASCII digits.
    let d = std::str::from_utf8(d).unwrap_or("0");
    if negative {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..-decpt {
                out.push('0');
            }
            out.push_str(d);
        } else if decpt as usize >= d.len() {
            out.push_str(d);
            for _ in 0..(decpt as usize - d.len()) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&d[..decpt as usize]);
            out.push('.');
            out.push_str(&d[decpt as usize..]);
        }
    } else {
        out.push_str(&d[..1]);
        if d.len() > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", e.abs());
    }
}

/// Append an integer.
pub fn write_i64(out: &mut String, v: i64) {
    let _ = write!(out, "{v}");
}

/// Append a `serde_json::Value` in the reference's style (separators, escapes). Used for the
/// rare messages whose content is dynamic JSON (initial_state requests echoed, script objects).
pub fn write_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_i64(out, i);
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                write_f64(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        J::String(s) => write_str(out, s),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// The deepest nesting a whole message may have. The LOVE-manager parses frames with Python's
/// `json.loads`, whose C scanner counts each nested array or object against the interpreter's
/// recursion limit (1000 in CPython 3.11, shared with the Python frames below the call: a
/// top-level call takes 994 levels, from 200 frames down 793); the manager's channel layer
/// re-encodes messages with msgpack, whose limit is 511. 256 leaves room for both.
pub const MAX_DEPTH: usize = 256;

/// The deepest nesting a [`Value::Json`](crate::abi::Value::Json) field may have: the message
/// envelope around a field adds at most 8 levels, so a field within this bound always fits
/// [`MAX_DEPTH`].
pub const MAX_VALUE_DEPTH: usize = MAX_DEPTH - 16;

/// The most digits Python's `int()` accepts (`sys.get_int_max_str_digits()`, 4300 by default
/// since 3.11): `json.loads` of a longer integer raises `ValueError`.
const MAX_INT_DIGITS: usize = 4300;

/// Why a text is not JSON the LOVE-manager can parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct InvalidJson {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Check that `text` is one JSON value that Python's `json.loads` accepts (with the reference's
/// `NaN`, `Infinity` and `-Infinity` tokens), nested at most [`MAX_DEPTH`] deep. One pass, no
/// allocation: the host runs it once on every message before it is queued for the manager.
pub fn validate(text: &str) -> Result<(), InvalidJson> {
    validate_with_depth(text, MAX_DEPTH)
}

/// [`validate`] with another nesting bound (at most 1024).
pub fn validate_with_depth(text: &str, max_depth: usize) -> Result<(), InvalidJson> {
    let b = text.as_bytes();
    let max_depth = max_depth.min(1024);
    // One bit per open container: set for an object.
    let mut kinds = [0u64; 16];
    let mut depth = 0usize;
    let mut i = 0usize;
    let err = |offset: usize, reason: &'static str| Err(InvalidJson { offset, reason });
    'value: loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'{') | Some(b'[') => {
                let object = b[i] == b'{';
                if depth >= max_depth {
                    return err(i, "nested too deep for the LOVE-manager's parser");
                }
                let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                if object {
                    kinds[word] |= bit;
                } else {
                    kinds[word] &= !bit;
                }
                depth += 1;
                i = skip_ws(b, i + 1);
                match (object, b.get(i)) {
                    (true, Some(b'}')) | (false, Some(b']')) => {
                        depth -= 1;
                        i += 1;
                    }
                    (true, _) => {
                        i = key(b, i)?;
                        continue 'value;
                    }
                    (false, _) => continue 'value,
                }
            }
            Some(b'"') => i = string(b, i)?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'N') => i = literal(b, i, b"NaN")?,
            Some(b'I') => i = literal(b, i, b"Infinity")?,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            _ => return err(i, "expecting a value"),
        }
        // After a value: close containers until one continues with a comma.
        loop {
            i = skip_ws(b, i);
            if depth == 0 {
                return if i == b.len() { Ok(()) } else { err(i, "extra data after the value") };
            }
            let object = kinds[(depth - 1) / 64] & (1u64 << ((depth - 1) % 64)) != 0;
            match (object, b.get(i)) {
                (_, Some(b',')) => {
                    i += 1;
                    if object {
                        i = key(b, skip_ws(b, i))?;
                    }
                    continue 'value;
                }
                (true, Some(b'}')) | (false, Some(b']')) => {
                    depth -= 1;
                    i += 1;
                }
                (true, _) => return err(i, "expecting ',' or '}'"),
                (false, _) => return err(i, "expecting ',' or ']'"),
            }
        }
    }
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The offset after the run of ASCII digits at `i`, eight bytes at a time (numbers are most of
/// a telemetry message). Per byte, a digit has high nibble 3 and low nibble at most 9; only
/// the lowest flagged byte of a word is used, and no byte below it carries into it.
#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let not_digit =
            ((x & HIGH_NIBBLES) ^ THREES) | ((x.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) ^ THREES);
        // Top bit of each byte set where that byte of `not_digit` is non-zero.
        let flags = (((not_digit & LOW7).wrapping_add(LOW7)) | not_digit) & !LOW7;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// An object key and its colon; returns the offset after the colon.
fn key(b: &[u8], i: usize) -> Result<usize, InvalidJson> {
    if b.get(i) != Some(&b'"') {
        return Err(InvalidJson { offset: i, reason: "expecting a property name in double quotes" });
    }
    let i = skip_ws(b, string(b, i)?);
    if b.get(i) != Some(&b':') {
        return Err(InvalidJson { offset: i, reason: "expecting ':'" });
    }
    Ok(i + 1)
}

/// A string starting at the quote at `i`; returns the offset after the closing quote. Python
/// rejects raw control characters (strict mode) and takes any `\uXXXX`, lone surrogates too.
fn string(b: &[u8], mut i: usize) -> Result<usize, InvalidJson> {
    i += 1;
    loop {
        // Plain bytes first, eight at a time: most of a message is string text.
        i = plain_run(b, i);
        while let Some(&c) = b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = b.get(i + 2..i + 6).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                    if hex.is_none() {
                        return Err(InvalidJson { offset: i, reason: "invalid \\uXXXX escape" });
                    }
                    i += 6;
                }
                _ => return Err(InvalidJson { offset: i, reason: "invalid escape" }),
            },
            Some(_) => return Err(InvalidJson { offset: i, reason: "control character in a string" }),
            None => return Err(InvalidJson { offset: i, reason: "unterminated string" }),
        }
    }
}

/// Skip whole 8-byte words holding no quote, backslash or control character (SWAR: for each
/// byte, `has_zero(x)` sets its top bit when it is zero; the lowest flagged byte is exact).
#[inline]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // Bytes below 0x20: x - 0x20 borrows into the top bit where the top bit was clear.
        let special = has_zero(x ^ (ONES * b'"' as u64))
            | has_zero(x ^ (ONES * b'\\' as u64))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, InvalidJson> {
    if b.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(InvalidJson { offset: i, reason: "expecting a value" })
    }
}

/// Python's number pattern `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`, or `-Infinity`.
fn number(b: &[u8], mut i: usize) -> Result<usize, InvalidJson> {
    let start = i;
    if b[i] == b'-' {
        i += 1;
        if b.get(i) == Some(&b'I') {
            return literal(b, i, b"Infinity");
        }
    }
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i),
        _ => return Err(InvalidJson { offset: start, reason: "expecting a value" }),
    }
    let int_digits = i - int_start;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return Err(InvalidJson { offset: i, reason: "expecting digits after '.'" });
        }
        (i, integer) = (end, false);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        let mut j = i + 1;
        if let Some(b'+' | b'-') = b.get(j) {
            j += 1;
        }
        let end = digits(b, j);
        if end == j {
            return Err(InvalidJson { offset: i, reason: "expecting digits in the exponent" });
        }
        (i, integer) = (end, false);
    }
    if integer && int_digits > MAX_INT_DIGITS {
        return Err(InvalidJson { offset: start, reason: "an integer longer than Python's 4300-digit limit" });
    }
    Ok(i)
}

/// A [`Value::Json`](crate::abi::Value::Json) text as it goes into a message: pasted when it is
/// JSON the manager can parse (nested at most [`MAX_VALUE_DEPTH`]), else carried as a JSON
/// string holding the text, so that a malformed value can never break the message around it.
pub fn write_json_value(out: &mut String, text: &str) {
    if validate_with_depth(text, MAX_VALUE_DEPTH).is_ok() {
        out.push_str(text);
    } else {
        write_str(out, text);
    }
}

/// Parse JSON text that may contain the reference's `NaN`/`Infinity` tokens, turning them into
/// strings (`"NaN"`, `"Infinity"`, `"-Infinity"`) as the LOVE-frontend does before parsing.
/// For tests and tools comparing wire text; producers never need it.
pub fn parse_lenient(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let patched = patch_non_finite(text);
            serde_json::from_str(&patched).map_err(|_| first)
        }
    }
}

fn patch_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
        }
        let rest = &text[i..];
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            i += t.len();
            continue;
        }
        // Copy the whole UTF-8 character.
        let ch = rest.chars().next().expect("char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, v);
        s
    }

    #[test]
    fn floats_match_python_repr() {
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(2.0), "2.0");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1700000000.5), "1700000000.5");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1e15), "1000000000000000.0");
        assert_eq!(f(1e-5), "1e-05");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(0.1f32 as f64), "0.10000000149011612");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f(1.7976931348623157e308), "1.7976931348623157e+308");
        // Notation thresholds differ between ryu and Python (checked against CPython's repr
        // on 9,000 random doubles when this was written).
        assert_eq!(f(0.00012), "0.00012");
        assert_eq!(f(-1e-5), "-1e-05");
        assert_eq!(f(5e-324), "5e-324");
        assert_eq!(f(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(f(9999999999999998.0), "9999999999999998.0");
        assert_eq!(f(1e22), "1e+22");
        assert_eq!(f(123.456), "123.456");
    }

    #[test]
    fn strings_are_escaped_like_ensure_ascii() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\u{1}é😀x");
        assert_eq!(s, r#""a\"b\\c\nd\u0001\u00e9\ud83d\ude00x""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é😀x");
    }

    #[test]
    fn validation_accepts_what_pythons_json_loads_accepts() {
        // Each case checked against CPython 3.11's json.loads when this was written.
        let accepted = [
            "NaN",
            "-Infinity",
            "[1,NaN, Infinity]",
            "1e5",
            "-0",
            "1E+2",
            r#""\ud800""#,
            r#""\/\b\f\n\r\t\"\\ é""#,
            " 1 ",
            "\"\u{7f}\"",
            r#"{"a" :1 , "b":[ ] }"#,
            "true",
            "null",
            "{}",
            "[]",
            "-0.5e-3",
        ];
        for t in accepted {
            assert_eq!(validate(t), Ok(()), "{t:?}");
        }
        let long_int = "1".repeat(4300);
        assert_eq!(validate(&long_int), Ok(()));
        assert_eq!(validate(&format!("-{long_int}")), Ok(()));
        assert_eq!(validate(&format!("1{long_int}.0")), Ok(()), "floats have no digit limit");
        let refused = [
            "",
            " ",
            "\"\u{1}\"",
            "01",
            "-",
            "1.",
            ".5",
            "\u{feff}1",
            "[1,]",
            r#"{"a":1,}"#,
            "nan",
            "-01",
            "-NaN",
            "Infinity1",
            "truex",
            r#""\x""#,
            r#""\u12""#,
            "\u{c}1",
            "1 2",
            "{1:2}",
            "{{{not json",
            r#"1, "injected": {}"#,
            "[1}",
            "{\"a\"]",
            "\"abc",
            "1e",
            "1e+",
            "tru",
        ];
        for t in refused {
            assert!(validate(t).is_err(), "{t:?} accepted");
        }
        assert!(validate(&format!("1{long_int}")).is_err(), "4301 digits: over Python's int limit");
    }

    #[test]
    fn validation_bounds_the_nesting() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(validate(&nested(MAX_DEPTH)), Ok(()));
        let err = validate(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.reason.contains("nested too deep"), "{err}");
        assert!(validate(&nested(5000)).is_err());
        let objects = format!("{}1{}", "{\"a\": ".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(validate(&objects), Ok(()));
        assert!(validate_with_depth(&objects, MAX_DEPTH - 1).is_err());
        assert_eq!(validate_with_depth(&nested(3), 3), Ok(()));
    }

    #[test]
    fn a_malformed_json_value_is_carried_as_a_string() {
        let mut out = String::new();
        write_json_value(&mut out, r#"{"a": [1, NaN]}"#);
        assert_eq!(out, r#"{"a": [1, NaN]}"#);
        for bad in ["{{{not json", r#"1, "injected": {}"#, &format!("{}{}", "[".repeat(5000), "]".repeat(5000))] {
            let mut out = String::from("[");
            write_json_value(&mut out, bad);
            out.push(']');
            assert_eq!(validate(&out), Ok(()), "{bad:.40}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v[0], *bad);
        }
    }

    #[test]
    fn lenient_parse_patches_non_finite_tokens_outside_strings() {
        let v = parse_lenient(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity"}"#).unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"][1], "-Infinity");
        assert_eq!(v["c"], "NaN Infinity");
    }
}
