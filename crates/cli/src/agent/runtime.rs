//! Is the runtime beside us up, and serving the model we are about to declare?
//!
//! OpenAI-compatible runtimes (vLLM, SGLang, llama.cpp, TGI's Messages API) list their
//! models on `GET /v1/models`; TGI's native API names its model on `GET /info` (`model_id`).
//! Either answer also proves that the model is loaded: the servers answer them only then.

use std::time::Duration;

use serde_json::Value;

use crate::error::CliError;

pub struct RuntimeProbe {
    url: String,
    native_tgi: bool,
    /// The name the runtime knows the model by.
    model: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl RuntimeProbe {
    pub fn new(
        url: &str,
        runtime: &str,
        model: &str,
        api_key: Option<String>,
    ) -> Result<Self, CliError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("--runtime-url '{url}' is not a URL: {e}"))?;
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if crate::admin_client::is_loopback(&parsed) {
            builder = builder.no_proxy();
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            native_tgi: runtime == "tgi-native",
            model: model.to_string(),
            api_key,
            http: builder
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))?,
        })
    }

    /// `Ok` when the runtime answers and serves the model; else what is wrong, in words.
    pub async fn check(&self) -> Result<(), CliError> {
        let path = if self.native_tgi {
            "/info"
        } else {
            "/v1/models"
        };
        let url = format!("{}{path}", self.url);
        let mut req = self.http.get(&url);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", super::api::cause(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered HTTP {}", status.as_u16()).into());
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("GET {url} did not answer JSON: {e}"))?;
        let served: Vec<String> = if self.native_tgi {
            body["model_id"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect()
        } else {
            body["data"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .filter_map(|m| m["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        if served.contains(&self.model) {
            Ok(())
        } else {
            Err(format!(
                "the runtime serves [{}], not '{}' (pass the runtime's own name with --upstream-model)",
                served.join(", "),
                self.model
            ).into())
        }
    }
}
