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
    fn lenient_parse_patches_non_finite_tokens_outside_strings() {
        let v = parse_lenient(r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity"}"#).unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"][1], "-Infinity");
        assert_eq!(v["c"], "NaN Infinity");
    }
}
