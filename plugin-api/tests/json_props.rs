//! The message check (`json::validate`) against an independent parser (serde_json) on
//! JSON-like text: they agree wherever their grammars do. Differences by design: the check also
//! takes `NaN`/`Infinity`/`-Infinity` (the reference sends them) and lone `\u` surrogates
//! (Python takes them), refuses integers over Python's 4300 digits, and bounds the nesting.

use love_plugin_api::json::{validate, write_value};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_serde_json_on_json_like_text(text in r#"[\[\]{}",: 0-9.eE+\-tfnrulsa\\/b]{0,24}"#) {
        // Without `\u` escapes serde_json and Python take the same strings.
        prop_assume!(!text.contains("\\u"));
        let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        prop_assert_eq!(validate(&text).is_ok(), serde_ok, "{:?}", text);
    }

    #[test]
    fn every_written_value_passes(v in json_value()) {
        let mut text = String::new();
        write_value(&mut text, &v);
        prop_assert_eq!(validate(&text), Ok(()), "{}", text);
        let compact = v.to_string();
        prop_assert_eq!(validate(&compact), Ok(()), "{}", compact);
        // Any strict prefix of an array or object is incomplete.
        if compact.starts_with(['[', '{']) {
            for cut in 1..compact.len() {
                if compact.is_char_boundary(cut) {
                    prop_assert!(validate(&compact[..cut]).is_err(), "{:?}", &compact[..cut]);
                }
            }
        }
    }
}
