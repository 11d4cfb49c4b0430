use std::str::FromStr;

/// The deployment's configuration: the key/value strings of its spec (or of
/// `weir test --config KEY=VALUE`).
#[derive(Clone, Debug, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("config `{key}` is required"))
    }

    /// The value of `key` parsed as `T`; `Ok(None)` when unset, and an error
    /// naming the key and value when it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|e| format!("config `{key}` = `{v}`: {e}"))
            })
            .transpose()
    }

    /// Like [`Config::parse`], with a default for an unset key.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_entries_win_and_parse_errors_name_the_key() {
        let c = Config::new(vec![
            ("n".into(), "1".into()),
            ("n".into(), "2".into()),
            ("x".into(), "abc".into()),
        ]);
        assert_eq!(c.get("n"), Some("2"));
        assert_eq!(c.parse::<u32>("n").unwrap(), Some(2));
        assert_eq!(c.parse::<u32>("missing").unwrap(), None);
        let err = c.parse::<u32>("x").unwrap_err();
        assert!(err.contains("`x` = `abc`"), "{err}");
        assert!(c.require("missing").unwrap_err().contains("`missing`"));
    }
}
