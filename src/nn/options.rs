//! Settings owned by the layer or model they configure.
//!
//! A normalization layer (or an architecture) with settings defines one struct for them in its
//! own file and names it in its registry entry ([`OptionsEntry::of`]); `config.json` stores it as
//! one object under the entry's key (`norm_config.ubn`, `model.cp-mobile`). The configs that hold
//! them ([`crate::nn::norm::NormConfig`], [`crate::nn::models::ModelConfig`]) keep an
//! [`OptionsMap`] of such objects and never name a layer's fields, so a new layer with settings
//! touches no shared struct (docs/architecture.md, "Adding a norm").

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A settings struct: `#[serde(default, deny_unknown_fields)]`, so a partial object fills in the
/// defaults and a misspelt field is an error rather than a silently ignored setting.
pub trait Options:
    Serialize + DeserializeOwned + Default + Clone + PartialEq + std::fmt::Debug
{
    /// Its key in the config: the registry name of the layer or model it belongs to.
    const KEY: &'static str;
}

/// How a registry entry knows its settings without naming their type: their key, their
/// defaults, and how to read (and complete) an object of them.
#[derive(Clone, Copy)]
pub struct OptionsEntry {
    pub key: &'static str,
    default: fn() -> Value,
    read: fn(Value) -> serde_json::Result<Value>,
}

impl OptionsEntry {
    /// The entry of settings struct `O`.
    pub const fn of<O: Options>() -> Self {
        Self {
            key: O::KEY,
            default: default_value::<O>,
            read: complete::<O>,
        }
    }
}

fn default_value<O: Options>() -> Value {
    to_value(&O::default())
}

/// Parses an object as `O` (defaults for what it omits) and writes it back whole.
fn complete<O: Options>(v: Value) -> serde_json::Result<Value> {
    Ok(to_value(&serde_json::from_value::<O>(v)?))
}

/// A settings struct as JSON. Plain structs of numbers, strings and enums always serialize (no
/// map with non-string keys, no failing `Serialize` impl), so a failure here is a defect in the
/// struct, not bad input.
fn to_value<O: Serialize>(o: &O) -> Value {
    serde_json::to_value(o).expect("settings structs always serialize to JSON")
}

/// Every entry's settings, complete, by key. Built only from defaults, from objects read through
/// their entry ([`OptionsMap::read`]) or from typed values ([`OptionsMap::set`]), so every value
/// parses as its struct.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct OptionsMap(BTreeMap<String, Value>);

impl OptionsMap {
    /// The defaults of every entry.
    pub fn defaults<'a>(entries: impl IntoIterator<Item = &'a OptionsEntry>) -> Self {
        Self(
            entries
                .into_iter()
                .map(|e| (e.key.to_string(), (e.default)()))
                .collect(),
        )
    }

    /// The settings objects of a config file: each known key read through its entry (missing
    /// fields take their defaults), missing keys their defaults; an unknown key or a bad object
    /// is an error naming it (`what`: where the objects sit, e.g. `norm_config`).
    pub fn read<'a>(
        what: &str,
        mut objects: BTreeMap<String, Value>,
        entries: impl IntoIterator<Item = &'a OptionsEntry> + Clone,
    ) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for e in entries.clone() {
            let v = match objects.remove(e.key) {
                Some(v) => (e.read)(v).map_err(|err| format!("{what}.{}: {err}", e.key))?,
                None => (e.default)(),
            };
            map.insert(e.key.to_string(), v);
        }
        if let Some(key) = objects.keys().next() {
            let known: Vec<_> = entries.into_iter().map(|e| e.key).collect();
            return Err(format!(
                "{what}: unknown setting '{key}' (known here: {})",
                known.join(", ")
            ));
        }
        Ok(Self(map))
    }

    /// The settings of type `O`: its defaults where the map has none.
    pub fn get<O: Options>(&self) -> O {
        self.0
            .get(O::KEY)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Replaces the settings of type `O`.
    pub fn set<O: Options>(&mut self, o: O) {
        self.0.insert(O::KEY.to_string(), to_value(&o));
    }

    /// Drops every entry's settings but `key`'s.
    pub fn retain_only(&mut self, key: &str) {
        self.0.retain(|k, _| k == key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        a: u32,
        b: String,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                a: 3,
                b: "x".into(),
            }
        }
    }

    impl Options for Demo {
        const KEY: &'static str = "demo";
    }

    const ENTRIES: [OptionsEntry; 1] = [OptionsEntry::of::<Demo>()];

    fn objects(json: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn partial_objects_are_completed_and_missing_ones_defaulted() {
        let m = OptionsMap::read("cfg", objects(r#"{"demo": {"a": 7}}"#), &ENTRIES).unwrap();
        assert_eq!(
            m.get::<Demo>(),
            Demo {
                a: 7,
                b: "x".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"demo":{"a":7,"b":"x"}}"#
        );
        let m = OptionsMap::read("cfg", objects("{}"), &ENTRIES).unwrap();
        assert_eq!(m, OptionsMap::defaults(&ENTRIES));
        assert_eq!(m.get::<Demo>(), Demo::default());
    }

    #[test]
    fn bad_objects_and_unknown_keys_are_named() {
        let err = OptionsMap::read("cfg", objects(r#"{"demo": {"c": 1}}"#), &ENTRIES).unwrap_err();
        assert!(err.starts_with("cfg.demo: unknown field `c`"), "{err}");
        let err =
            OptionsMap::read("cfg", objects(r#"{"demo": {"a": "7"}}"#), &ENTRIES).unwrap_err();
        assert!(err.starts_with("cfg.demo: invalid type"), "{err}");
        let err = OptionsMap::read("cfg", objects(r#"{"dmeo": {}}"#), &ENTRIES).unwrap_err();
        assert_eq!(err, "cfg: unknown setting 'dmeo' (known here: demo)");
    }

    #[test]
    fn set_replaces_and_get_reads_back() {
        let mut m = OptionsMap::defaults(&ENTRIES);
        let d = Demo {
            a: 1,
            b: "y".into(),
        };
        m.set(d.clone());
        assert_eq!(m.get::<Demo>(), d);
    }
}
