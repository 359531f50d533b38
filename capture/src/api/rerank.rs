//! Rerank (`POST /v1/rerank` with `query` and `documents`, the Jina/Cohere shape vLLM and
//! SGLang serve): one answer, a relevance score per document.

use recap_schemas::Api;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ApiShape, Input, InputKind};
use crate::dataset::Prompt;
use crate::delta::{clamp_u32, Delta};

/// `--api rerank`.
#[derive(Debug)]
pub struct Rerank;

impl ApiShape for Rerank {
    fn api(&self) -> Api {
        Api::Rerank
    }

    fn path(&self) -> &'static str {
        "rerank"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Fields
    }

    fn input_field(&self) -> &'static str {
        "documents"
    }

    /// Never streamed.
    fn ask_stream_usage(&self, _params: &mut Map<String, Value>) {}

    /// A rerank row's query and documents; any other row's first text is the query and the
    /// rest its documents (`capture` refuses rows that have no documents).
    fn input(&self, prompt: &Prompt) -> Input {
        let (query, documents) = match prompt {
            Prompt::Rerank { query, documents } => (query.clone(), documents.clone()),
            other => {
                let mut texts = other.texts().into_iter();
                (texts.next().unwrap_or_default(), texts.collect())
            }
        };
        let mut m = Map::new();
        m.insert("query".into(), Value::String(query));
        m.insert("documents".into(), documents.into());
        Input::Fields(m)
    }

    fn is_own_shape(&self, prompt: &Prompt) -> bool {
        matches!(prompt, Prompt::Rerank { .. })
    }

    /// The body's usage: `prompt_tokens` where the server sends it, else vLLM's and Jina's
    /// `total_tokens` (a rerank generates nothing, so both are its input).
    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            usage: Option<Usage>,
        }
        #[derive(Deserialize)]
        struct Usage {
            #[serde(default)]
            total_tokens: Option<u64>,
        }
        // SGLang answers with a bare list of `{index, score, document}`, without usage.
        if data.trim_start().starts_with('[') {
            serde_json::from_str::<serde::de::IgnoredAny>(data)?;
            return Ok(Delta::default());
        }
        let mut d = crate::delta::parse_with(data, want_id)?;
        if d.usage_prompt_tokens.is_none() {
            let body: Body = serde_json::from_str(data)?;
            d.usage_prompt_tokens = clamp_u32(body.usage.and_then(|u| u.total_tokens));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_rerank_body() {
        let d = Rerank
            .parse(
                r#"{"id":"rerank-1","model":"m","usage":{"total_tokens":21},"results":[{"index":1,"document":{"text":"b"},"relevance_score":0.9},{"index":0,"document":{"text":"a"},"relevance_score":0.1}]}"#,
                true,
            )
            .expect("json");
        assert_eq!((d.usage_prompt_tokens, d.id.as_deref()), (Some(21), Some("rerank-1")));
        assert!(!Rerank.is_own_shape(&Prompt::Text("q".into())));
        let sglang = Rerank
            .parse(r#"[{"index":0,"score":0.5,"document":"a"}]"#, true)
            .expect("a bare list is an answer");
        assert!(sglang.error_message.is_none() && sglang.usage_prompt_tokens.is_none());
        let Input::Fields(f) = Rerank.input(&Prompt::Items(vec!["q".into(), "d".into()])) else {
            panic!("fields");
        };
        assert_eq!(Value::Object(f), serde_json::json!({"query": "q", "documents": ["d"]}));
    }
}
