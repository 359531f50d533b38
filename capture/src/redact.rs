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
    fn secret_header_names() {
        for n in ["Authorization", "api-key", "x-api-key", "Cookie", "X-Auth-Token"] {
            assert!(is_secret_header(n), "{n}");
        }
        assert!(!is_secret_header("x-request-id"));
    }
}
