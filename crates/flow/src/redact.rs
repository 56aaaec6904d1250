//! Scrubbing credential values out of text a server sent back, in the forms a server is likely to
//! echo them: as they are, base64-encoded (standard or URL-safe, padded or not), percent-encoded
//! (upper- or lower-case escapes, `+` or `%20` for a space), and in any letter case (hex tokens are
//! often re-cased). Matching ignores ASCII case throughout: redacting a look-alike costs nothing,
//! missing a variant leaks a secret.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Shown instead of any credential value that a server echoed back.
pub(crate) const REDACTED: &str = "<redacted>";

/// Values shorter than this are skipped: they would redact ordinary words and cannot be real secrets.
const MIN_SECRET_LEN: usize = 4;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const BASE64_STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL_SAFE: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Replaces every form of every secret in `text` with [`REDACTED`].
pub(crate) fn redact_text<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            continue;
        }
        for form in secret_forms(secret) {
            out = replace_ignoring_ascii_case(&out, &form, REDACTED);
        }
    }
    out
}

/// Every encoding of `secret` that is scrubbed, longest first, so that a padded base64 form is
/// replaced whole before its unpadded prefix is looked for.
pub(crate) fn secret_forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.to_owned()];
    for alphabet in [BASE64_STANDARD, BASE64_URL_SAFE] {
        let padded = base64_encode(bytes, alphabet);
        forms.push(padded.trim_end_matches('=').to_owned());
        forms.push(padded);
    }
    forms.push(utf8_percent_encode(secret, COMPONENT).to_string());
    forms.push(utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string());
    forms.push(url::form_urlencoded::byte_serialize(bytes).collect());
    forms.retain(|form| form.len() >= MIN_SECRET_LEN);
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    forms
}

/// Replaces each occurrence of `needle` in `haystack`, comparing ASCII letters without regard to
/// case. ASCII lowercasing keeps every byte offset, so positions found in the lowered copy are valid
/// in the original.
fn replace_ignoring_ascii_case(haystack: &str, needle: &str, replacement: &str) -> String {
    if needle.is_empty() {
        return haystack.to_owned();
    }
    let lowered = haystack.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut rest = 0;
    while let Some(found) = lowered[rest..].find(&needle) {
        let start = rest + found;
        out.push_str(&haystack[rest..start]);
        out.push_str(replacement);
        rest = start + needle.len();
    }
    out.push_str(&haystack[rest..]);
    out
}

/// Base64 with `=` padding (RFC 4648). Encoding only, and only for matching: not worth a dependency.
fn base64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let sextets = [
            b[0] >> 2,
            ((b[0] & 0b11) << 4) | (b[1] >> 4),
            ((b[1] & 0b1111) << 2) | (b[2] >> 6),
            b[2] & 0b11_1111,
        ];
        for (index, sextet) in sextets.into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(alphabet[usize::from(sextet)]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes(), BASE64_STANDARD), expected);
        }
        // 0xfb 0xff encodes to the two characters that differ between the alphabets.
        assert_eq!(base64_encode(&[0xfb, 0xff], BASE64_STANDARD), "+/8=");
        assert_eq!(base64_encode(&[0xfb, 0xff], BASE64_URL_SAFE), "-_8=");
    }

    const SECRET: &str = "~~~p8e-Ab?c/d e>";

    fn redacted(text: &str) -> String {
        redact_text(text, &[SECRET])
    }

    #[test]
    fn the_exact_value_is_redacted() {
        assert_eq!(
            redacted(&format!("secret {SECRET} rejected")),
            "secret <redacted> rejected"
        );
    }

    #[test]
    fn base64_forms_are_redacted_padded_or_not() {
        // 16 bytes, starting with "~~~" (base64 `fn5+`): the forms have padding and the alphabets differ.
        let standard = base64_encode(SECRET.as_bytes(), BASE64_STANDARD);
        let url_safe = base64_encode(SECRET.as_bytes(), BASE64_URL_SAFE);
        assert!(
            standard.ends_with('=') && standard != url_safe,
            "{standard}"
        );
        for form in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            url_safe.trim_end_matches('=').to_owned(),
        ] {
            let text = redacted(&format!("Basic {form} is not valid"));
            assert_eq!(text, "Basic <redacted> is not valid", "{form}");
        }
    }

    #[test]
    fn percent_encoded_forms_are_redacted_in_either_case() {
        let upper = utf8_percent_encode(SECRET, COMPONENT).to_string();
        assert!(upper.contains("%3F") && upper.contains("%20"), "{upper}");
        let everything = utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string();
        let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        assert!(form.contains('+'), "{form}");
        for encoded in [
            upper.clone(),
            upper.to_ascii_lowercase(),
            everything.clone(),
            everything.to_ascii_lowercase(),
            form,
        ] {
            assert_eq!(
                redacted(&format!("client_secret={encoded}&scope=openid")),
                "client_secret=<redacted>&scope=openid",
                "{encoded}"
            );
        }
    }

    #[test]
    fn hex_tokens_are_redacted_in_any_case() {
        let token = "9f86d081884c7d659a2feaa0c55ad015";
        let text = redact_text(
            &format!("token {} and {} rejected", token.to_uppercase(), token),
            &[token],
        );
        assert_eq!(text, "token <redacted> and <redacted> rejected");
    }

    #[test]
    fn short_values_and_other_text_are_left_alone() {
        assert_eq!(redact_text("an ab AB", &["ab"]), "an ab AB");
        assert_eq!(
            redacted("nothing to see, ünïcode ok"),
            "nothing to see, ünïcode ok"
        );
    }

    #[test]
    fn case_insensitive_matching_keeps_multibyte_text_intact() {
        assert_eq!(
            redact_text("ÄÖÜ SeCrEt ÄÖÜ secret", &["secret"]),
            "ÄÖÜ <redacted> ÄÖÜ <redacted>"
        );
    }
}
