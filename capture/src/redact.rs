//! Keeping secrets out of everything a run writes.
//!
//! The API key only ever lives in a request header marked sensitive. The manifest stores the
//! command line and headers through these functions, which replace credential values with
//! [`REDACTED`].

use recap_schemas::manifest::REDACTED;

/// Whether a header carries credentials (by name, case-insensitive).
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || n.contains("key")
        || n.contains("token")
        || n.contains("secret")
        || n.contains("password")
        || n.contains("auth")
}

/// `Name: value` with the value redacted when the header is a credential.
pub fn redact_header_line(line: &str) -> String {
    match line.split_once(':') {
        Some((name, _)) if is_secret_header(name.trim()) => format!("{}: {REDACTED}", name.trim()),
        _ => line.to_string(),
    }
}

/// A URL with any `user:password@` part redacted.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The command line with credential values redacted: `--header` values naming a credential
/// header, URLs with user info, and the value of any flag whose name says key/token/secret.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is: Option<&str> = None;
    for a in args {
        if let Some(flag) = next_is.take() {
            out.push(redact_value(flag, a));
            continue;
        }
        if let Some((flag, value)) = a.split_once('=').filter(|(f, _)| f.starts_with("--")) {
            out.push(format!("{flag}={}", redact_value(flag, value)));
        } else {
            if a.starts_with('-') && a != "--api-key-env" {
                next_is = Some(a.as_str());
            }
            out.push(redact_value("", a));
        }
    }
    out
}

/// Flags whose value is a credential: a `-`/`_`-separated word of the name is `key`, `token`,
/// `secret`, `password` or `apikey` (so `--auth-token` is, `--max-tokens` and `--api-key-env`
/// are not).
fn is_secret_flag(flag: &str) -> bool {
    flag != "api-key-env"
        && flag
            .split(['-', '_'])
            .any(|w| matches!(w, "key" | "token" | "secret" | "password" | "apikey"))
}

fn redact_value(flag: &str, value: &str) -> String {
    let f = flag.trim_start_matches('-');
    if f == "header" || f == "H" {
        redact_header_line(value)
    } else if is_secret_flag(f) {
        REDACTED.to_string()
    } else {
        redact_url(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn headers_and_urls() {
        let got = redact_args(&s(&[
            "capture",
            "--header",
            "Authorization: Bearer sk-123",
            "--header=X-Api-Key: abc",
            "--header",
            "X-Trace: keep",
            "--url",
            "https://u:p@h:1/v1",
            "--api-key-env",
            "MY_KEY",
            "--some-token",
            "zzz",
            "--max-tokens",
            "512",
        ]));
        let joined = got.join(" ");
        for secret in ["sk-123", "abc", "u:p", "zzz"] {
            assert!(!joined.contains(secret), "{secret} leaked: {joined}");
        }
        assert!(joined.contains("X-Trace: keep"));
        assert!(joined.contains("MY_KEY"), "the variable name is not a secret");
        assert!(joined.contains("--max-tokens 512"), "{joined}");
        assert!(joined.contains("https://<redacted>@h:1/v1"));
    }

    #[test]
    fn secret_header_names() {
        for n in ["Authorization", "api-key", "x-api-key", "Cookie", "X-Auth-Token"] {
            assert!(is_secret_header(n), "{n}");
        }
        assert!(!is_secret_header("x-request-id"));
    }
}
