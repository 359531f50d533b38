//! Chat templates from `tokenizer_config.json`, rendered with minijinja.
//!
//! Servers count a chat request's input tokens on the prompt rendered through the model's
//! chat template (system/user markers included), so `--isl template` does the same. Python
//! string methods that Hugging Face templates use (`startswith`, `split`, `strip`, ...) come
//! from minijinja-contrib's pycompat layer.

use std::path::Path;

use minijinja::{context, Environment, Value};
use serde_json::Value as Json;

use crate::{Error, Result};

/// A compiled chat template plus the special-token strings it refers to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    digest: u64,
}

fn token_string(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// Reads `chat_template` from a `tokenizer_config.json` (a string, or a list of
    /// `{name, template}` where `default` wins).
    pub fn load(config: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(config).map_err(|source| Error::Io {
            path: config.to_path_buf(),
            source,
        })?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not valid JSON: {e}", config.display())))?;
        let template = match json.get("chat_template") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template").and_then(Json::as_str))
                .unwrap_or_default()
                .to_string(),
            _ => return Err(Error::Input(format!("{}: no `chat_template` field", config.display()))),
        };
        Self::compile(
            template,
            token_string(json.get("bos_token")),
            token_string(json.get("eos_token")),
            &text,
            config,
        )
    }

    /// Reads a template file (`--chat-template`): a `tokenizer_config.json`-style JSON file, or
    /// the Jinja source itself (`chat_template.jinja`; it then has no BOS/EOS strings).
    pub fn load_file(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "json") {
            return Self::load(path);
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::compile(text.clone(), String::new(), String::new(), &text, path)
    }

    fn compile(template: String, bos_token: String, eos_token: String, source: &str, path: &Path) -> Result<Self> {
        let mut env = Environment::new();
        // What transformers' `apply_chat_template` (and so vLLM and SGLang) sets.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", template)
            .map_err(|e| Error::Input(format!("{}: chat_template does not compile: {e}", path.display())))?;
        Ok(ChatTemplate {
            digest: crate::store::text_hash(&format!("template\0trim_blocks lstrip_blocks\0{source}")),
            env,
            bos_token,
            eos_token,
        })
    }

    /// Hash of the `tokenizer_config.json` it came from: part of the token-cache key of a
    /// rendered prompt, so that another template never reuses its counts.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Renders `messages` (a JSON array) with `add_generation_prompt = true`, as a server does
    /// before generating.
    pub fn render(&self, messages: &Json) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Internal(e.to_string()))?;
        tmpl.render(context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => true,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        })
        .map_err(|e| Error::Input(format!("rendering the chat template: {e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_qwen3_template() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/qwen3/tokenizer_config.json");
        let t = ChatTemplate::load(&p).expect("loads");
        let out = t
            .render(&serde_json::json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]))
            .expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
