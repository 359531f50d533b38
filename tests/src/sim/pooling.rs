//! The simulator's embeddings and rerank endpoints: one answer per batch after
//! `--ttft + --itl x items`, deterministic vectors and scores (functions of each text), usage
//! counted per item (embeddings) or per query-document pair (rerank), and the same per-prompt
//! faults as chat where they apply to a whole body (an HTTP error, a 200 whose body is an
//! error object, a malformed body). Shapes after OpenAI's embeddings reference and the
//! Jina/Cohere rerank shape vLLM serves (`results` with `index`, `document.text`,
//! `relevance_score`; `usage.total_tokens`).

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{fault_for, full_bytes, key_hash, request_key, splitmix64, Body, Fault, RequestInfo, Shared};

/// Which pooling endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/rerank`.
    Rerank,
}

/// Dimensions of a simulated embedding.
pub const DIMENSIONS: usize = 8;

/// The embedding of `text`: [`DIMENSIONS`] values in [-1, 1), a function of the text.
pub fn embedding(text: &str) -> Vec<f64> {
    let mut h = key_hash(text);
    (0..DIMENSIONS)
        .map(|_| {
            h = splitmix64(h);
            // 53 random bits onto [-1, 1).
            (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// The relevance of `document` to `query`: in [0, 1), a function of both.
pub fn relevance(query: &str, document: &str) -> f64 {
    (splitmix64(key_hash(query) ^ key_hash(document).rotate_left(17)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Words (or, with `--tokenizer`, tokens with the tokenizer's specials) of one embedded text.
fn item_tokens(shared: &Shared, text: &str) -> u64 {
    match &shared.cfg.tokenizer {
        Some(t) => t.count(text, true),
        None => super::prompt_tokens(text),
    }
}

/// Tokens of one query-document pair as a cross-encoder sees it: the tokenizer's pair encoding
/// (both texts and the specials around them), else the words of both.
fn pair_tokens(shared: &Shared, query: &str, document: &str) -> u64 {
    match &shared.cfg.tokenizer {
        Some(t) => t.count_pair(query, document),
        None => super::prompt_tokens(query) + super::prompt_tokens(document),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Answers one embeddings or rerank request.
pub(super) async fn respond(shared: Arc<Shared>, kind: Pooling, body: &Value, info: RequestInfo) -> Response<Body> {
    let cfg = &shared.cfg;
    let key = request_key(body);
    let fault = fault_for(&key, &cfg.faults);
    let rid = info.request_id.clone();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("recap-sim");
    let id = format!(
        "{}-{:016x}",
        if kind == Pooling::Rerank { "rerank" } else { "embd" },
        key_hash(&key)
    );
    let (items, answer) = match kind {
        Pooling::Embeddings => {
            let texts = strings(body.get("input"));
            let tokens: u64 = texts.iter().map(|t| item_tokens(&shared, t)).sum();
            let data: Vec<Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t)}))
                .collect();
            let answer = json!({"id": id, "object": "list", "created": 0, "model": model, "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
            (texts.len(), answer)
        }
        Pooling::Rerank => {
            let query = body.get("query").and_then(Value::as_str).unwrap_or_default();
            let docs = strings(body.get("documents"));
            let tokens: u64 = docs.iter().map(|d| pair_tokens(&shared, query, d)).sum();
            let mut results: Vec<(usize, f64)> = docs.iter().map(|d| relevance(query, d)).enumerate().collect();
            results.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top_n = body
                .get("top_n")
                .and_then(Value::as_u64)
                .map_or(results.len(), |n| n as usize);
            let results: Vec<Value> = results
                .iter()
                .take(top_n)
                .map(|(i, s)| json!({"index": i, "document": {"text": docs[*i]}, "relevance_score": s}))
                .collect();
            let answer = json!({"id": id, "model": model, "usage": {"total_tokens": tokens}, "results": results});
            (docs.len(), answer)
        }
    };
    let wait = cfg.ttft + cfg.itl * u32::try_from(items).unwrap_or(u32::MAX);
    if fault == Fault::Error {
        let status = StatusCode::from_u16(cfg.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = json!({"error": {"message": "simulated failure", "type": "server_error", "code": status.as_u16()}})
            .to_string();
        shared.raw(rid.as_deref(), None, None, text.as_bytes(), status.as_u16());
        return full_bytes(status, text.into());
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    if fault == Fault::Stall {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let text = match fault {
        Fault::Malformed => "{\"data\": [".to_string(),
        // vLLM's `ErrorResponse` in a 200.
        Fault::StreamError => json!({"object": "error", "message": "simulated failure while pooling",
            "type": "InternalServerError", "param": null, "code": 500})
        .to_string(),
        _ => answer.to_string(),
    };
    shared.raw(rid.as_deref(), Some(0), None, text.as_bytes(), 200);
    let mut r = full_bytes(StatusCode::OK, text.into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
