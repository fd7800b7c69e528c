//! The command-line options of the benchmark binaries (tests/src/bin):
//! `--key value` pairs after the subcommand.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// `--key value` pairs; the names in `flags` (given to `parse`) take no value.
pub struct Options(BTreeMap<String, String>);

impl Options {
    pub fn parse(args: &[String], flags: &[&str]) -> anyhow::Result<Options> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                bail!("unexpected argument {key:?} (options are --name value)");
            };
            if flags.contains(&name) {
                map.insert(name.to_string(), "true".to_string());
                continue;
            }
            let value = it.next().with_context(|| format!("{key} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        Ok(Options(map))
    }

    pub fn string(&self, name: &str) -> anyhow::Result<String> {
        self.0
            .get(name)
            .cloned()
            .with_context(|| format!("--{name} is required"))
    }

    /// The value of `name`, or `default` when not given.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// Whether `name` was given (a flag, or an option with a value).
    pub fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn number(&self, name: &str, default: usize) -> anyhow::Result<usize> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .with_context(|| format!("--{name} {v:?} is not a number")),
        }
    }
}
