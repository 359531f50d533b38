//! Embeddings (`POST /v1/embeddings` with `input`, a list of texts): one answer per batch.

use recap_schemas::Api;
use serde_json::{Map, Value};

use super::{ApiShape, InputKind};
use crate::delta::Delta;

/// `--api embeddings`.
#[derive(Debug)]
pub struct Embeddings;

impl ApiShape for Embeddings {
    fn api(&self) -> Api {
        Api::Embeddings
    }

    fn path(&self) -> &'static str {
        "embeddings"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Fields
    }

    fn input_field(&self) -> &'static str {
        "input"
    }

    /// Never streamed.
    fn ask_stream_usage(&self, _params: &mut Map<String, Value>) {}

    /// The body's `usage.prompt_tokens` (and an error the server reported); the vectors
    /// themselves stay in `raw`, unread.
    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
        crate::delta::parse_with(data, want_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_errors_of_an_embeddings_body() {
        let d = Embeddings
            .parse(
                r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}"#,
                true,
            )
            .expect("json");
        assert_eq!(d.usage_prompt_tokens, Some(7));
        assert!(!d.has_output() && d.error_message.is_none());
        let e = Embeddings
            .parse(
                r#"{"object":"error","message":"input too long","type":"BadRequestError","code":400}"#,
                false,
            )
            .expect("json");
        assert_eq!(e.error_message.as_deref(), Some("input too long"));
    }
}
