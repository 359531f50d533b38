//! OpenAI completions (`POST /v1/completions` with `prompt`).

use recap_schemas::Api;
use serde_json::{Map, Value};

use super::{ApiShape, InputKind};
use crate::delta::{Delta, StreamMemo};

/// `--api completions`.
#[derive(Debug)]
pub struct Completions;

impl ApiShape for Completions {
    fn api(&self) -> Api {
        Api::Completions
    }

    fn path(&self) -> &'static str {
        "completions"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Text
    }

    fn input_field(&self) -> &'static str {
        "prompt"
    }

    fn ask_stream_usage(&self, params: &mut Map<String, Value>) {
        super::openai_stream_usage(params);
    }

    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
        crate::delta::parse_with(data, want_id)
    }

    fn parse_event(&self, data: &str, want_id: bool, memo: &mut StreamMemo) -> Result<Delta, serde_json::Error> {
        crate::delta::parse_in_stream(data, want_id, memo)
    }
}
