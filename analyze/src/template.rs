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
    digest: crate::keys::TextKey,
}

fn token_string(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// The `chat_template` field of a `tokenizer_config.json`-style object: a string, or a list of
/// `{name, template}` where `default` wins; `None` when there is none.
fn template_field(json: &Json) -> Option<String> {
    match json.get("chat_template")? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template").and_then(Json::as_str))
            .map(str::to_string),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<(String, Json)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::unreadable(path, source))?;
    let json =
        serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: not valid JSON: {e}", path.display())))?;
    Ok((text, json))
}

impl ChatTemplate {
    /// Reads `chat_template` from a `tokenizer_config.json` (a string, or a list of
    /// `{name, template}` where `default` wins); a file without one is an error.
    pub fn load(config: &Path) -> Result<Self> {
        let (text, json) = read_json(config)?;
        let template = template_field(&json)
            .ok_or_else(|| Error::Input(format!("{}: no `chat_template` field", config.display())))?;
        Self::compile(
            template,
            token_string(json.get("bos_token")),
            token_string(json.get("eos_token")),
            &text,
            config,
        )
    }

    /// The chat template a tokenizer folder provides, where models keep it: a
    /// `chat_template.jinja` file (newer models), else `chat_template.json`'s
    /// `chat_template`, else `tokenizer_config.json`'s. BOS and EOS strings come from
    /// `tokenizer_config.json`. A folder with none (a base model; the GPT-4o files) has no
    /// template: `--isl template` then counts raw text, and this is said once as a warning.
    pub fn find(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.exists() {
            Some(read_json(&config_path)?)
        } else {
            None
        };
        let (bos, eos) = config.as_ref().map_or((String::new(), String::new()), |(_, j)| {
            (token_string(j.get("bos_token")), token_string(j.get("eos_token")))
        });
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            let text = std::fs::read_to_string(&jinja).map_err(|source| Error::unreadable(&jinja, source))?;
            return Self::compile(text.clone(), bos, eos, &text, &jinja).map(Some);
        }
        let json_file = dir.join("chat_template.json");
        if json_file.exists() {
            let (text, json) = read_json(&json_file)?;
            let template = template_field(&json)
                .ok_or_else(|| Error::Input(format!("{}: no `chat_template` field", json_file.display())))?;
            return Self::compile(template, bos, eos, &text, &json_file).map(Some);
        }
        match config {
            Some((text, json)) => match template_field(&json) {
                Some(template) => Self::compile(template, bos, eos, &text, &config_path).map(Some),
                None => {
                    tracing::warn!(
                        "{}: no chat template (a base model?); chat inputs are counted as raw text",
                        config_path.display()
                    );
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    /// Reads a template file (`--chat-template`): a `tokenizer_config.json`-style JSON file, or
    /// the Jinja source itself (`chat_template.jinja`; it then has no BOS/EOS strings).
    pub fn load_file(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "json") {
            return Self::load(path);
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::unreadable(path, source))?;
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
            digest: crate::keys::text_hash(&format!("template\0trim_blocks lstrip_blocks\0{source}")),
            env,
            bos_token,
            eos_token,
        })
    }

    /// Hash of the `tokenizer_config.json` it came from: part of the token-cache key of a
    /// rendered prompt, so that another template never reuses its counts.
    pub fn digest(&self) -> crate::keys::TextKey {
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

    #[test]
    fn folders_keep_templates_in_three_places_or_none() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers");
        // tokenizer_config.json without `chat_template` (GPT-4o's files): none, not an error.
        assert!(ChatTemplate::find(&fixtures.join("gpt4o")).expect("loads").is_none());
        assert!(ChatTemplate::find(&fixtures.join("gpt2")).expect("loads").is_none());
        let qwen = ChatTemplate::find(&fixtures.join("qwen3"))
            .expect("loads")
            .expect("a template");
        let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
        let want = qwen.render(&msgs).expect("renders");
        // The same template as `chat_template.jinja` beside a config without one wins, and
        // as `chat_template.json`.
        let dir = tempfile::tempdir().expect("tmp");
        let (_, config) = read_json(&fixtures.join("qwen3/tokenizer_config.json")).expect("json");
        let template = template_field(&config).expect("template");
        let mut bare = config.clone();
        bare.as_object_mut().expect("object").remove("chat_template");
        std::fs::write(dir.path().join("tokenizer_config.json"), bare.to_string()).expect("write");
        std::fs::write(
            dir.path().join("chat_template.json"),
            serde_json::json!({ "chat_template": template }).to_string(),
        )
        .expect("write");
        let from_json = ChatTemplate::find(dir.path()).expect("loads").expect("template");
        assert_eq!(from_json.render(&msgs).expect("renders"), want);
        std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}J").expect("write");
        let jinja = ChatTemplate::find(dir.path()).expect("loads").expect("template");
        assert_eq!(
            jinja.render(&msgs).expect("renders"),
            format!("{}J", token_string(config.get("bos_token"))),
            "the .jinja file wins, with the config's BOS"
        );
        std::fs::write(dir.path().join("chat_template.jinja"), "{% if %}").expect("write");
        let err = ChatTemplate::find(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("chat_template.jinja"), "{err}");
    }
}
