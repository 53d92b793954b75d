//! Component names as given on the command line: `Name` or `Name:index`.
//!
//! The rules are ts_salobj's `name_to_name_index` (golden `factory.jsonl`): a name of letters,
//! digits, `_` and `-` not starting with a digit, optionally `:` and a decimal index (default 0).
//! Two deliberate differences from the Python pattern: only ASCII digits are accepted in the
//! index (Python's `\d` also takes e.g. Arabic-Indic digits, which on a command line is a typo,
//! not an index), and an index must fit in 63 bits.

use std::fmt;

/// A parsed component name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentName {
    /// The SAL component (`ScriptQueue`).
    pub name: String,
    /// The SAL index (0 when not given).
    pub index: i64,
}

/// Why a component name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not of the form `name` or `name:index`.
    #[error("component name {0:?} is not of the form 'name' or 'name:index' (letters, digits, '_' and '-', not starting with a digit; index: decimal digits)")]
    Malformed(String),
    /// `name:*`.
    #[error("the index for component {0:?} is a wildcard ('*'); give a number")]
    Wildcard(String),
    /// An index too large for SAL.
    #[error("the index of component name {0:?} is too large")]
    IndexTooLarge(String),
}

impl ComponentName {
    /// Parse `Name` or `Name:index`. A single trailing newline is accepted, as in Python.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let (name, index) = match body.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (body, None),
        };
        let mut chars = name.chars();
        let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '-');
        let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !first_ok || !rest_ok {
            return Err(NameError::Malformed(text.to_string()));
        }
        let index = match index {
            None => 0,
            Some("*") => return Err(NameError::Wildcard(name.to_string())),
            Some(i) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => {
                i.parse::<i64>().map_err(|_| NameError::IndexTooLarge(text.to_string()))?
            }
            Some(_) => return Err(NameError::Malformed(text.to_string())),
        };
        Ok(ComponentName { name: name.to_string(), index })
    }

    /// Split a list of arguments that may hold several names separated by spaces or commas
    /// (`LOVE_CSC_PRODUCER="ATDome Watcher"`) and parse each.
    pub fn parse_list<S: AsRef<str>>(args: &[S]) -> Result<Vec<Self>, NameError> {
        args.iter()
            .flat_map(|a| {
                a.as_ref()
                    .split(|c: char| c == ',' || c == ' ' || c == '\t')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|s| Self::parse(&s))
            .collect()
    }
}

impl fmt::Display for ComponentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accept/reject case of golden `factory.jsonl` (name_to_name_index).
    #[test]
    fn golden_name_to_name_index_table() {
        let path = crate::testutil::golden_path("factory.jsonl");
        let text = std::fs::read_to_string(&path).expect("golden factory.jsonl");
        let mut checked = 0;
        for line in text.lines() {
            let rec: serde_json::Value = serde_json::from_str(line).unwrap();
            if rec["case"] != "name_to_name_index" {
                continue;
            }
            let name = rec["input"]["name"].as_str().unwrap();
            let got = ComponentName::parse(name);
            if let Some(out) = rec["outputs"].as_array().and_then(|o| o.first()) {
                let expect: (String, i64) = serde_json::from_str(out.as_str().unwrap()).unwrap();
                if name.chars().any(|c| !c.is_ascii()) {
                    // Deliberate difference: Unicode digits are refused (see module docs).
                    assert!(got.is_err(), "{name:?} should be refused");
                } else {
                    assert_eq!(got.unwrap(), ComponentName { name: expect.0, index: expect.1 }, "{name:?}");
                }
            } else {
                let err = got.expect_err(name);
                let is_wildcard = rec["error"].as_str().unwrap().starts_with("WildcardIndexError");
                assert_eq!(matches!(err, NameError::Wildcard(_)), is_wildcard, "{name:?}");
            }
            checked += 1;
        }
        assert_eq!(checked, 20);
    }

    #[test]
    fn lists_split_on_spaces_and_commas() {
        let got = ComponentName::parse_list(&["Watcher ScriptQueue:1,ATDome", "MTHexapod:2"]).unwrap();
        let names: Vec<String> = got.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["Watcher:0", "ScriptQueue:1", "ATDome:0", "MTHexapod:2"]);
        assert!(ComponentName::parse_list(&["ATDome:x"]).is_err());
        assert!(ComponentName::parse(":1").is_err());
        assert!(ComponentName::parse("ATDome:99999999999999999999999").is_err());
    }
}
