//! Keeping secrets out of everything a run writes.
//!
//! The API key only ever lives in a request header marked sensitive. The manifest stores the
//! command line and headers through these functions, which replace credential values with
//! [`REDACTED`]. A server may echo a credential back (a 401 body quoting the `Authorization`
//! header, a proxy's debug field in a chunk): [`Secrets`] holds every secret value capture
//! knows, and the one writer replaces each occurrence in every string it writes.

use std::borrow::Cow;

use memchr::memmem;
use recap_schemas::manifest::REDACTED;

/// Secret values shorter than this are not searched for: they would match ordinary text
/// everywhere (no real credential is this short).
pub const MIN_SECRET_BYTES: usize = 4;

/// Every secret value a run knows, searched for in everything it writes.
#[derive(Default)]
pub struct Secrets {
    /// Longest first, so `Bearer sk-1` is replaced whole before `sk-1` alone.
    finders: Vec<memmem::Finder<'static>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} patterns)", self.finders.len())
    }
}

impl Secrets {
    /// The secrets among `values`, each also in the forms an echo may take: JSON-escaped,
    /// percent-encoded, and for `Scheme token` credentials the token alone.
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut all: Vec<String> = Vec::new();
        for v in values {
            let v = v.trim().to_string();
            if let Some((scheme, token)) = v.split_once(' ') {
                if matches!(
                    scheme.to_ascii_lowercase().as_str(),
                    "bearer" | "basic" | "token" | "digest"
                ) {
                    all.push(token.trim().to_string());
                    if scheme.eq_ignore_ascii_case("basic") {
                        use base64::Engine;
                        if let Ok(plain) = base64::engine::general_purpose::STANDARD.decode(token.trim()) {
                            if let Ok(text) = String::from_utf8(plain) {
                                all.extend(text.split_once(':').map(|(_, pw)| pw.to_string()));
                                all.push(text);
                            }
                        }
                    }
                }
            }
            all.push(v);
        }
        let mut forms: Vec<String> = Vec::new();
        for v in all {
            if let Ok(json) = serde_json::to_string(&v) {
                let inner = json[1..json.len() - 1].to_string();
                // Some encoders also escape `/` (JSON allows `\/`).
                forms.push(inner.replace('/', "\\/"));
                forms.push(inner);
            }
            forms.push(percent_encode(&v));
            forms.push(v);
        }
        forms.retain(|f| f.len() >= MIN_SECRET_BYTES);
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        Secrets {
            finders: forms
                .into_iter()
                .map(|f| memmem::Finder::new(f.as_bytes()).into_owned())
                .collect(),
        }
    }

    /// Whether there is nothing to search for.
    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when it holds none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for f in &self.finders {
            if f.find(out.as_bytes()).is_none() {
                continue;
            }
            let mut s = String::with_capacity(out.len());
            let mut last = 0;
            for at in f.find_iter(out.as_bytes()) {
                s.push_str(&out[last..at]);
                s.push_str(REDACTED);
                last = at + f.needle().len();
            }
            s.push_str(&out[last..]);
            out = Cow::Owned(s);
        }
        out
    }

    /// Redacts `text` in place.
    pub fn apply(&self, text: &mut String) {
        if let Cow::Owned(s) = self.redact(text) {
            *text = s;
        }
    }

    /// Redacts an optional string in place.
    pub fn apply_opt(&self, text: &mut Option<String>) {
        if let Some(t) = text.as_mut() {
            self.apply(t);
        }
    }
}

/// `%XX`-encodes every byte outside the URL-unreserved set (how a key shows in a query string).
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a URL query parameter carries a credential (by name): a `-`/`_`-separated word of
/// it is `key`, `apikey`, `token`, `secret`, `signature`, `sig`, `auth`, `password` or
/// `credential` (so `api_key`, `access_token`, `X-Amz-Signature` are; `max_tokens` is not).
pub fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.split(['-', '_', '.']).any(|w| {
        matches!(
            w,
            "key" | "apikey" | "token" | "secret" | "signature" | "sig" | "auth" | "password" | "credential"
        )
    }) || matches!(n.as_str(), "apikey" | "accesstoken" | "authtoken")
}

/// The secret values of a URL: its user-info (whole and the password alone) and the values of
/// query parameters named like credentials (as written and decoded).
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some((ui, _)) = authority.rsplit_once('@') {
            out.push(ui.to_string());
            out.push(percent_decode(ui));
            if let Some((_, pw)) = ui.split_once(':') {
                out.push(pw.to_string());
                out.push(percent_decode(pw));
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if is_secret_param(&percent_decode(name)) && !value.is_empty() {
                    out.push(value.to_string());
                    out.push(percent_decode(value));
                }
            }
        }
    }
    out
}

/// Whether a header carries credentials (by name, case-insensitive): `cookie`, `set-cookie`,
/// or a name that holds `key`, `token`, `secret`, `password` or `auth` (`authorization` and
/// `proxy-authorization` among them). One pass over the name, nothing allocated: it runs for
/// every response header of every request (lower-casing a copy and five substring searches
/// cost B3 1.6k instructions per header, 1.3 % of capture's).
pub fn is_secret_header(name: &str) -> bool {
    const PARTS: [&[u8]; 5] = [b"key", b"token", b"secret", b"password", b"auth"];
    let n = name.as_bytes();
    if n.eq_ignore_ascii_case(b"cookie") || n.eq_ignore_ascii_case(b"set-cookie") {
        return true;
    }
    (0..n.len()).any(|i| {
        let part: &[u8] = match n[i].to_ascii_lowercase() {
            b'k' => PARTS[0],
            b't' => PARTS[1],
            b's' => PARTS[2],
            b'p' => PARTS[3],
            b'a' => PARTS[4],
            _ => return false,
        };
        n.get(i..i + part.len()).is_some_and(|w| w.eq_ignore_ascii_case(part))
    })
}

/// `Name: value` with the value redacted when the header is a credential.
pub fn redact_header_line(line: &str) -> String {
    match line.split_once(':') {
        Some((name, _)) if is_secret_header(name.trim()) => format!("{}: {REDACTED}", name.trim()),
        _ => line.to_string(),
    }
}

/// A URL with any `user:password@` part and the values of credential-named query parameters
/// ([`is_secret_param`]) redacted.
pub fn redact_url(url: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let mut out = match head.find("://") {
        None => head.to_string(),
        Some(scheme_end) => {
            let rest = &head[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}{REDACTED}@{}", &head[..scheme_end + 3], &rest[at + 1..]),
                None => head.to_string(),
            }
        }
    };
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_param(&percent_decode(name)) => format!("{name}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The command line as parsed, with credential values redacted: built from clap's matches
/// (which flag took which value), never by re-scanning argv, so flag order, `--flag=value`,
/// `-Hvalue` and boolean flags cannot shift a secret into an unredacted position.
/// Only flags given on the command line appear, in the order given.
pub fn command_line(program: &str, cmd: &clap::Command, matches: &clap::ArgMatches) -> Vec<String> {
    let mut items: Vec<(usize, Vec<String>)> = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let name = arg.get_long().map_or_else(|| id.to_string(), str::to_string);
        let flag = match arg.get_long() {
            Some(l) => format!("--{l}"),
            None => id.to_string(),
        };
        let indices: Vec<usize> = matches.indices_of(id).map(Iterator::collect).unwrap_or_default();
        if arg.get_action().takes_values() {
            let values = matches.get_raw(id).into_iter().flatten();
            for (i, v) in indices.iter().zip(values) {
                let v = redact_value(&name, &v.to_string_lossy());
                items.push((*i, vec![flag.clone(), v]));
            }
        } else {
            for i in &indices {
                items.push((*i, vec![flag.clone()]));
            }
        }
    }
    items.sort_by_key(|(i, _)| *i);
    std::iter::once(program.to_string())
        .chain(items.into_iter().flat_map(|(_, words)| words))
        .collect()
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
    use clap::{Arg, ArgAction, Command};

    fn cmd() -> Command {
        Command::new("capture")
            .arg(Arg::new("url").long("url"))
            .arg(Arg::new("insecure").long("insecure").action(ArgAction::SetTrue))
            .arg(Arg::new("header").long("header").short('H').action(ArgAction::Append))
            .arg(Arg::new("api_key_env").long("api-key-env"))
            .arg(Arg::new("some_token").long("some-token"))
            .arg(Arg::new("max_tokens").long("max-tokens"))
            .arg(Arg::new("verbose").long("verbose").short('v').action(ArgAction::Count))
    }

    fn line(args: &[&str]) -> String {
        let c = cmd();
        let m = c.clone().try_get_matches_from(args).expect("parses");
        command_line("capture", &c, &m).join(" ")
    }

    #[test]
    fn headers_urls_and_secret_flags_are_redacted_in_any_order() {
        let joined = line(&[
            "capture",
            "--insecure",
            "--header",
            "Authorization: Bearer sk-123",
            "-v",
            "-HX-Api-Key: abc",
            "--header=X-Trace: keep",
            "--url",
            "https://u:p@h:1/v1",
            "--api-key-env",
            "MY_KEY",
            "--some-token=zzz",
            "--max-tokens",
            "512",
        ]);
        for secret in ["sk-123", "abc", "u:p", "zzz"] {
            assert!(!joined.contains(secret), "{secret} leaked: {joined}");
        }
        assert!(
            joined.starts_with("capture --insecure --header Authorization: <redacted> --verbose"),
            "{joined}"
        );
        assert!(joined.contains("X-Trace: keep"));
        assert!(
            joined.contains("--api-key-env MY_KEY"),
            "the variable name is not a secret"
        );
        assert!(joined.contains("--max-tokens 512"), "{joined}");
        assert!(joined.contains("https://<redacted>@h:1/v1"));
    }

    #[test]
    fn urls_lose_user_info_and_credential_query_values() {
        let u = "https://me:pw%21@h:1/v1?api_key=K1&model=m&X-Amz-Signature=S2&max_tokens=5#frag";
        let r = redact_url(u);
        assert_eq!(
            r,
            "https://<redacted>@h:1/v1?api_key=<redacted>&model=m&X-Amz-Signature=<redacted>&max_tokens=5#frag"
        );
        let mut found = url_secrets(u);
        found.sort();
        found.dedup();
        assert_eq!(found, ["K1", "S2", "me:pw!", "me:pw%21", "pw!", "pw%21"]);
    }

    #[test]
    fn secrets_are_replaced_in_every_form_an_echo_takes() {
        let s = Secrets::new(["Bearer sk-a/b+c".to_string(), "abc".to_string()]);
        let body = r#"{"error":"bad header Authorization: Bearer sk-a/b+c","json":"sk-a\/b+c","url":"?k=sk-a%2Fb%2Bc","short":"abc"}"#;
        let out = s.redact(body);
        assert!(!out.contains("sk-a"), "{out}");
        assert!(out.contains("Authorization: <redacted>"), "{out}");
        assert!(
            out.contains(r#""short":"abc""#),
            "3-byte values are not searched: {out}"
        );
        assert!(matches!(s.redact("nothing here"), Cow::Borrowed(_)));
        let basic = Secrets::new(["Basic dXNlcjpodW50ZXIy".to_string()]);
        assert_eq!(
            basic.redact("pw=hunter2 raw=dXNlcjpodW50ZXIy"),
            "pw=<redacted> raw=<redacted>"
        );
    }

    #[test]
    fn secret_header_names() {
        for n in [
            "Authorization",
            "proxy-authorization",
            "api-key",
            "x-api-key",
            "Cookie",
            "SET-COOKIE",
            "X-Auth-Token",
            "x-goog-api-key",
            "token",
            "x-secret",
            "db-PassWord",
            "xauth",
            "monkey",
        ] {
            assert!(is_secret_header(n), "{n}");
        }
        for n in [
            "x-request-id",
            "content-type",
            "set-cookies-count",
            "cookies",
            "ke",
            "tok",
            "secre",
            "passwor",
            "aut",
            "",
            "date",
            "server-timing",
            "x-ratelimit-remaining-requests",
        ] {
            assert!(!is_secret_header(n), "{n}");
        }
        // The definition it replaced (lower-cased copy, substring searches), over names built
        // from every part cut and cased at each place.
        let reference = |n: &str| {
            let n = n.to_ascii_lowercase();
            matches!(n.as_str(), "cookie" | "set-cookie")
                || ["key", "token", "secret", "password", "auth"]
                    .iter()
                    .any(|p| n.contains(p))
        };
        for part in ["key", "token", "secret", "password", "auth", "cookie", "set-cookie"] {
            for cut in 0..=part.len() {
                for (pre, post) in [("", ""), ("x-", ""), ("", "-id"), ("a", "k")] {
                    let name = format!("{pre}{}{post}", &part[..cut]);
                    let upper = format!("{pre}{}{post}", part[..cut].to_ascii_uppercase());
                    for n in [name, upper] {
                        assert_eq!(is_secret_header(&n), reference(&n), "{n}");
                    }
                }
            }
        }
    }
}
