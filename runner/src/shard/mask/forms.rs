//! The forms a secret can be printed in, each of which the masker hides:
//! the value itself, its base64 and base64url (padded or not, and the part
//! of either that stays the same wherever the value sits inside a longer
//! encoded text — `echo "user:$TOKEN" | base64`), its URL-encoded, hex and
//! JSON-escaped forms, and every string leaf of a JSON secret (a service
//! account file). A hostile step can always invent another encoding; these
//! are the ones tools produce on their own.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Shorter forms would match unrelated text (and leak a prefix of nothing).
pub const MIN_FORM: usize = 8;

/// Every form of `value` to hide, without duplicates; `value` first.
pub fn of(value: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![value.as_bytes().to_vec()];
    let mut add = |form: String| {
        if form.len() >= MIN_FORM && !out.iter().any(|f| f == form.as_bytes()) {
            out.push(form.into_bytes());
        }
    };
    let bytes = value.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        add(engine.encode(bytes));
    }
    for core in shifted_base64(bytes) {
        add(core);
    }
    add(percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string());
    add(hex::encode(bytes));
    add(hex::encode_upper(bytes));
    if let Ok(json) = serde_json::to_string(value) {
        add(json[1..json.len() - 1].to_owned());
    }
    add(json_ascii(value));
    if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(value) {
        let mut leaves = Vec::new();
        string_leaves(&parsed, &mut leaves);
        for leaf in leaves {
            for form in of_leaf(&leaf) {
                add(form);
            }
        }
    }
    out
}

/// A JSON leaf's forms, without recursing into JSON again.
fn of_leaf(leaf: &str) -> Vec<String> {
    let mut forms = vec![leaf.to_owned()];
    if let Ok(json) = serde_json::to_string(leaf) {
        forms.push(json[1..json.len() - 1].to_owned());
    }
    forms
}

/// JSON escaping that keeps to ASCII (`\u00e9`), as Python's `json.dumps`
/// and many loggers write it.
fn json_ascii(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    out
}

fn string_leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| string_leaves(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| string_leaves(i, out)),
        _ => {}
    }
}

/// For each of the three positions the value can start at inside a longer
/// base64 text, the characters that depend on the value alone.
fn shifted_base64(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for shift in 0..3usize {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(bytes);
        let start = (4 * shift).div_ceil(3);
        let end = 4 * (shift + bytes.len()) / 3;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if start < end && end <= encoded.len() {
                out.push(encoded[start..end].to_owned());
            }
        }
    }
    out
}

/// Everything but RFC 3986's unreserved characters is escaped.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(forms: &[Vec<u8>], text: &str) -> bool {
        forms
            .iter()
            .any(|f| text.as_bytes().windows(f.len()).any(|w| w == f.as_slice()))
    }

    #[test]
    fn every_form_a_tool_prints_is_covered() {
        let secret = "p@ss/w0rd+token?é\"";
        let forms = of(secret);
        let printed = [
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            hex::encode(secret),
            hex::encode_upper(secret),
            percent_encoding::utf8_percent_encode(secret, UNRESERVED).to_string(),
            serde_json::to_string(secret).unwrap(),
            // Python's json.dumps: non-ASCII as \u escapes.
            r#""p@ss/w0rd+token?\u00e9\"""#.to_owned(),
            // Basic auth: the value inside a longer base64 text, at each shift.
            STANDARD.encode(format!("user:{secret}")),
            STANDARD.encode(format!("ab:{secret}!")),
            STANDARD.encode(format!("a:{secret}xy")),
        ];
        for text in printed {
            assert!(contains(&forms, &text), "{text} is not covered");
        }
    }

    #[test]
    fn every_leaf_of_a_json_secret_is_a_form() {
        let secret = r#"{"type":"service_account","private_key":"-----KEY abc\ndef-----","id":"12345678901"}"#;
        let forms = of(secret);
        assert!(contains(&forms, "id is 12345678901"));
        assert!(contains(
            &forms,
            r#""private_key": "-----KEY abc\ndef-----""#
        ));
        assert!(contains(&forms, "-----KEY abc\ndef-----"));
    }
}
