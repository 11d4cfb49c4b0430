//! JSON validated by a JSON Schema. The schema's `$ref`s resolve only
//! within it: nothing is fetched on a schema's say-so.

/// A compiled JSON Schema.
pub struct JsonSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema").finish_non_exhaustive()
    }
}

impl JsonSchema {
    pub fn parse(text: &str) -> Result<JsonSchema, String> {
        let schema: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("a JSON Schema that is not JSON: {e}"))?;
        // Patterns by the linear-time `regex` engine, compiled small:
        // backtracking ones (fancy-regex, the default) let a schema spend a
        // worker's minutes on one string.
        let validator = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(1 << 20))
            .build(&schema)
            .map_err(|e| format!("not a JSON Schema Weir can use: {}", e.masked()))?;
        Ok(JsonSchema { validator })
    }

    /// Checks that `json` is JSON its schema accepts; the error names
    /// where it is not (not the values there, which may be private).
    pub fn check(&self, json: &[u8]) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        self.validator.validate(&value).map_err(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() {
                "the value".to_owned()
            } else {
                format!("field `{at}`")
            };
            format!("{at} does not fit its JSON Schema: {}", e.masked())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"item":{"type":"string"}},"required":["id","item"]}"#;

    #[test]
    fn valid_json_passes_and_invalid_names_the_field() {
        let schema = JsonSchema::parse(ORDER).unwrap();
        schema.check(br#"{"id":1,"item":"pen"}"#).unwrap();
        let e = schema.check(br#"{"id":"one","item":"pen"}"#).unwrap_err();
        assert!(e.contains("/id"), "{e}");
        assert!(!e.contains("one"), "values stay out of errors: {e}");
        assert!(schema.check(br#"{"id":1}"#).is_err());
        assert!(schema.check(b"{").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_remote_reference_is_not_fetched() {
        let remote = r#"{"$ref":"http://127.0.0.1:1/schema.json"}"#;
        assert!(JsonSchema::parse(remote).is_err());
        // A recursive schema is fine: data nesting is bounded by the JSON parser.
        let tree = r##"{"type":"object","properties":{"child":{"$ref":"#"}}}"##;
        let schema = JsonSchema::parse(tree).unwrap();
        schema.check(br#"{"child":{"child":{}}}"#).unwrap();
    }

    #[test]
    fn a_backtracking_pattern_is_refused_and_patterns_run_in_linear_time() {
        let backreference = r#"{"type":"string","pattern":"^(a+)+\1$"}"#;
        assert!(JsonSchema::parse(backreference).is_err());
        let nested = JsonSchema::parse(r#"{"type":"string","pattern":"^(a+)+$"}"#).unwrap();
        let started = std::time::Instant::now();
        let text = format!("\"{}b\"", "a".repeat(100_000));
        assert!(nested.check(text.as_bytes()).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
