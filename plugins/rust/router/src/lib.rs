//! Router: fans each record out to every topic whose pattern its value
//! contains. Routes are config entries `route.<topic>` = `<substring>`;
//! a record matching no route goes to the default output topic.

use weir_sdk::{Config, Emitter, Error, Output, Record, Transform};

struct Router {
    routes: Vec<(String, Vec<u8>)>,
}

impl Transform for Router {
    fn init(config: &Config) -> Result<Self, String> {
        let routes: Vec<_> = config
            .iter()
            .filter_map(|(k, v)| {
                Some((k.strip_prefix("route.")?.to_owned(), v.as_bytes().to_vec()))
            })
            .collect();
        if routes
            .iter()
            .any(|(topic, pattern)| topic.is_empty() || pattern.is_empty())
        {
            return Err("every `route.<topic>` needs a topic name and a non-empty pattern".into());
        }
        Ok(Router { routes })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value().unwrap_or_default();
        let mut routed = false;
        for (topic, pattern) in &self.routes {
            if value
                .windows(pattern.len())
                .any(|w| w == pattern.as_slice())
            {
                let mut output = Output::new()
                    .topic(topic)
                    .key_opt(record.key())
                    .value(value);
                for (name, v) in record.headers() {
                    output = output.header_opt(name, v);
                }
                out.emit(output);
                routed = true;
            }
        }
        if !routed {
            out.forward(record);
        }
        Ok(())
    }
}

weir_sdk::export!(Router);
