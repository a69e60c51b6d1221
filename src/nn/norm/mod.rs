//! Pluggable normalization layers (docs/norms.md): one trait, one file per layer, one registry.
//!
//! Every layer keeps its trainable parameters in the *parameter* `VarMap` (the only one the
//! optimiser sees) and its non-gradient state (running mean/var, UBN's `moving_cos`) in a
//! separate *buffer* `VarMap`, updated in place with `Var::set` in train mode and saved with
//! the checkpoint (docs/norms.md §1, §5.6.4). Adding a layer is one new file (with its
//! [`NormEntry`] and, if it has settings, their struct) plus its name in the `registry!` list;
//! docs/architecture.md, "Adding a norm", walks through it.

use candle_core::{bail, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::nn::ops::Activation;
use crate::nn::options::{Options, OptionsEntry, OptionsMap};
use crate::onnx::graph::OnnxGraph;

pub mod gate;
pub mod stats;

super::registry! {
    NormEntry;
    bn,
    l2bn,
    gn,
    gnplus,
    ubn,
    iebn,
    ln,
    in_norm,
    none,
}

pub use gn::GnOptions;
pub use gnplus::{GnPlusOptions, GnPlusVariant};
pub use l2bn::{L2bnMode, L2bnOptions};
pub use ubn::{BnetInit, FctMode, UbnOptions};

/// A normalization layer over NC* input (rank 2, 3 or 4; UBN needs rank 4).
pub trait Norm: Send + Sync + std::fmt::Debug {
    /// Train forward (`train = true`: batch statistics, buffers updated) or eval forward
    /// (running statistics, batch-independent except faithful GN+, docs/norms.md §7.2), followed by
    /// `act`: the layers fuse it into their last kernel where they can (conv → norm → ReLU).
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor>;
    /// [`Norm::forward_act_t`] without an activation.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act_t(x, train, Activation::Identity)
    }
    /// The registry name (`bn`, `l2bn`, ...).
    fn name(&self) -> &'static str;
    /// Appends the eval-mode decomposition (opset 17) for a rank-4 input named `input` and
    /// returns the name of the output value.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String>;
    /// The eval-mode layer as one per-channel affine `y = scale·x + shift` (each of length C),
    /// where it is one: the exporter then folds it into the convolution before it and emits no
    /// norm node (issue 9). `None`, the default, for layers with per-sample statistics or
    /// gates, whose output is not an affine function of each channel alone.
    fn eval_affine(&self) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
}

/// Hyper-parameters of every layer: what all share, then each layer's own settings, defined in
/// its file and named in its registry entry ([`NormEntry::configured_by`]); the defaults are those
/// of docs/norms.md. Stored in `config.json` under `norm_config`, each layer's settings as one
/// object (`"ubn": {"tau": 0.15, ...}`); the flat form of earlier run folders (`ubn_tau`,
/// `l2bn_mode`, ...) still loads ([`LEGACY_FLAT`]). An unknown key or setting is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NormConfigFile")]
pub struct NormConfig {
    /// ε inside the square root (docs/norms.md §1).
    pub eps: f64,
    /// PyTorch-style running-stat momentum, weight on the new value (docs/norms.md §1).
    pub momentum: f64,
    /// Every registered layer's settings, complete.
    #[serde(flatten)]
    options: OptionsMap,
}

impl Default for NormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            options: OptionsMap::defaults(registered_options()),
        }
    }
}

/// The settings entries of the registered layers that have settings.
fn registered_options() -> impl Iterator<Item = &'static OptionsEntry> + Clone {
    REGISTRY.iter().filter_map(|e| e.options.as_ref())
}

/// `norm_config` as read: the shared fields, then the layers' objects (or legacy flat fields).
#[derive(Deserialize)]
#[serde(default)]
struct NormConfigFile {
    eps: f64,
    momentum: f64,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

impl Default for NormConfigFile {
    fn default() -> Self {
        let d = NormConfig::default();
        Self {
            eps: d.eps,
            momentum: d.momentum,
            rest: BTreeMap::new(),
        }
    }
}

/// The flat per-layer fields of `norm_config` before each layer owned its settings, as
/// (flat key, layer, field); frozen, read only so that old run folders still load (and resume)
/// with the settings they trained with. A layer's object, where present, wins over them.
const LEGACY_FLAT: [(&str, &str, &str); 9] = [
    ("l2bn_mode", "l2bn", "mode"),
    ("gn_max_groups", "gn", "max_groups"),
    ("gnplus_variant", "gnplus", "variant"),
    ("ubn_tau", "ubn", "tau"),
    ("ubn_momentum_cos", "ubn", "momentum_cos"),
    ("ubn_cos_samples", "ubn", "cos_samples"),
    ("ubn_fct_mode", "ubn", "fct_mode"),
    ("ubn_bnet_init", "ubn", "bnet_init"),
    ("ubn_kernel", "ubn", "kernel"),
];

/// Moves the legacy flat fields of `rest` into their layers' objects.
fn nest_legacy_fields(rest: &mut BTreeMap<String, Value>) {
    let nested: Vec<String> = rest.keys().cloned().collect();
    for (flat, layer, field) in LEGACY_FLAT {
        let Some(v) = rest.remove(flat) else { continue };
        if nested.iter().any(|k| k == layer) {
            continue;
        }
        let obj = rest
            .entry(layer.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = obj {
            m.insert(field.to_string(), v);
        }
    }
}

impl TryFrom<NormConfigFile> for NormConfig {
    type Error = String;

    fn try_from(mut f: NormConfigFile) -> std::result::Result<Self, String> {
        nest_legacy_fields(&mut f.rest);
        Ok(Self {
            eps: f.eps,
            momentum: f.momentum,
            options: OptionsMap::read("norm_config", f.rest, registered_options())?,
        })
    }
}

impl NormConfig {
    /// A layer's settings, e.g. `cfg.options::<UbnOptions>().tau`.
    pub fn options<O: Options>(&self) -> O {
        self.options.get()
    }

    /// Replaces a layer's settings.
    pub fn set_options<O: Options>(&mut self, o: O) {
        self.options.set(o);
    }

    /// The config with a layer's settings replaced.
    pub fn with_options<O: Options>(mut self, o: O) -> Self {
        self.set_options(o);
        self
    }

    /// Changes a layer's settings in place, e.g. `cfg.update(|o: &mut UbnOptions| o.tau = 0.2)`.
    pub fn update<O: Options>(&mut self, f: impl FnOnce(&mut O)) {
        let mut o = self.options();
        f(&mut o);
        self.set_options(o);
    }

    /// GN group count for `c` channels: the largest divisor of `c` that is ≤ `gn.max_groups`
    /// (docs/norms.md §2.2, judgement).
    pub fn groups_for(&self, c: usize) -> usize {
        (1..=self.options::<GnOptions>().max_groups.max(1).min(c.max(1)))
            .rev()
            .find(|g| c.is_multiple_of(*g))
            .unwrap_or(1)
    }
}

/// The two variable stores a layer is built from: `params` (optimised) and `buffers`
/// (running statistics and other state, never optimised, saved with the checkpoint).
#[derive(Clone)]
pub struct NormBuilder<'a> {
    pub params: VarBuilder<'a>,
    pub buffers: VarBuilder<'a>,
}

impl<'a> NormBuilder<'a> {
    pub fn new(params: VarBuilder<'a>, buffers: VarBuilder<'a>) -> Self {
        Self { params, buffers }
    }

    /// Both stores under the same sub-path, so a layer's parameters and buffers share names.
    pub fn pp(&self, name: &str) -> Self {
        Self {
            params: self.params.pp(name),
            buffers: self.buffers.pp(name),
        }
    }

    /// A per-channel (C) parameter with a constant initial value.
    pub(crate) fn param(&self, name: &str, c: usize, init: f64) -> Result<Tensor> {
        self.params.get_with_hints(c, name, Init::Const(init))
    }

    /// A buffer as a `Var`, so the layer can overwrite it in place (`Var::set`).
    pub(crate) fn buffer(&self, name: &str, len: usize, init: f64) -> Result<Var> {
        let t = self.buffers.get_with_hints(len, name, Init::Const(init))?;
        if !t.is_variable() {
            bail!("norm buffer {name}: the buffer VarBuilder must be backed by a VarMap");
        }
        Var::from_tensor(&t)
    }
}

/// Builds one layer for `c` channels.
pub type NormCtor = fn(usize, &NormConfig, &NormBuilder) -> Result<Box<dyn Norm>>;

/// A rule a layer states about itself for `c` channels under a config.
pub type NormRule = fn(usize, &NormConfig) -> bool;

/// A layer as the registry knows it: its name, its constructor and its rules. Each layer
/// declares its own entry (`pub const ENTRY` in its file), so what is true of a layer is said
/// next to its forward and its ONNX emission, never as a match on its name elsewhere.
#[derive(Clone, Copy)]
pub struct NormEntry {
    /// The registry name (`--norm`, `config.json`'s `norm`, [`Norm::name`]).
    pub name: &'static str,
    pub build: NormCtor,
    /// Whether the layer standardizes every (sample, channel) map on its own; see
    /// [`standardizes_each_map`]. `false` unless the layer says otherwise.
    pub standardizes_each_map: NormRule,
    /// The layer's own settings, if it has any ([`NormEntry::configured_by`]).
    pub options: Option<OptionsEntry>,
}

impl NormEntry {
    /// An entry with the default rules.
    pub const fn new(name: &'static str, build: NormCtor) -> Self {
        Self {
            name,
            build,
            standardizes_each_map: never,
            options: None,
        }
    }

    /// The entry of a layer with settings `O` (stored as `norm_config.<O::KEY>`, the key being
    /// the layer's name); the layer reads them with [`NormConfig::options`].
    pub const fn configured_by<O: Options>(self) -> Self {
        Self {
            options: Some(OptionsEntry::of::<O>()),
            ..self
        }
    }

    /// The entry with its own [`NormEntry::standardizes_each_map`] rule.
    pub const fn standardizing(self, rule: NormRule) -> Self {
        Self {
            standardizes_each_map: rule,
            ..self
        }
    }
}

fn never(_c: usize, _cfg: &NormConfig) -> bool {
    false
}

/// The valid names, in registry order.
pub const NORM_NAMES: [&str; REGISTRY.len()] = super::names_of!(REGISTRY);

/// The valid names as prose for help texts: `bn, l2bn, ..., in or none`.
pub fn names_in_words() -> String {
    match NORM_NAMES.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The registry entry of `name`.
pub fn entry(name: &str) -> std::result::Result<&'static NormEntry, crate::error::UnknownName> {
    super::lookup(REGISTRY, "norm", name, &NORM_NAMES)
}

impl super::Registered for NormEntry {
    fn registry_name(&self) -> &'static str {
        self.name
    }
}

/// Checks a norm name before any work starts (e.g. a comparison that would fail on its last norm).
pub fn check_name(name: &str) -> std::result::Result<(), crate::error::UnknownName> {
    entry(name).map(|_| ())
}

/// Builds the layer registered as `name` for `c` channels.
pub fn build_norm(
    name: &str,
    c: usize,
    cfg: &NormConfig,
    nb: &NormBuilder,
) -> Result<Box<dyn Norm>> {
    if c == 0 {
        bail!("norm {name}: channel count must be positive");
    }
    match entry(name) {
        Ok(e) => (e.build)(c, cfg, nb),
        Err(e) => bail!("{e}"),
    }
}

/// Whether layer `name` with `c` channels standardizes every (sample, channel) map on its own,
/// as its registry entry says: IN (docs/norms.md §2.4), GN when the group rule of §2.2 gives
/// G = C, and deployable GN+ then too (its BN part re-normalizes maps that already have zero
/// mean, §4.2). Followed directly by a global average pool, such a layer outputs its bias β
/// whatever its input, so nothing before it gets a gradient (tests/model_grad_parity.rs).
/// `false` for an unknown name.
pub fn standardizes_each_map(name: &str, c: usize, cfg: &NormConfig) -> bool {
    entry(name).is_ok_and(|e| (e.standardizes_each_map)(c, cfg))
}

/// Builds a model's normalization layers: the layer chosen by name, one per call, under a
/// variable prefix (docs/models.md: "wherever the original has a BatchNorm, the chosen layer
/// goes").
pub struct NormFactory<'a> {
    pub name: &'a str,
    pub config: &'a NormConfig,
    pub builder: NormBuilder<'a>,
}

impl NormFactory<'_> {
    /// The chosen layer for `c` channels, its variables under `prefix`.
    pub fn build(&self, prefix: &str, c: usize) -> Result<Box<dyn Norm>> {
        build_norm(self.name, c, self.config, &self.builder.pp(prefix))
    }

    /// The layer for a `c`-channel map that feeds a global average pool directly: the chosen
    /// layer, or none (no variables) where the chosen one would make the pooled output a
    /// constant ([`standardizes_each_map`]), as IN, and GN or GN+ on a 10-class map, would.
    pub fn build_before_gap(&self, prefix: &str, c: usize) -> Result<Box<dyn Norm>> {
        if standardizes_each_map(self.name, c, self.config) {
            none::build(c, self.config, &self.builder.pp(prefix))
        } else {
            self.build(prefix, c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rule_matches_spec_examples() {
        // docs/norms.md §2.2: C=3 → 3, C=10 → 10, C=48 → 24, C=24 → 24, C=64 → 32.
        let cfg = NormConfig::default();
        for (c, g) in [
            (3, 3),
            (10, 10),
            (48, 24),
            (24, 24),
            (64, 32),
            (1, 1),
            (37, 1),
        ] {
            assert_eq!(cfg.groups_for(c), g, "C={c}");
        }
    }

    /// Faithful GN+ takes its batch-axis statistics with candle ops, which a synchronised step
    /// cannot all-reduce: inside a `--sync-bn` scope it is refused (outside it runs), while the
    /// deployable variant runs in both.
    #[test]
    fn faithful_gnplus_refuses_synchronised_statistics() {
        use crate::nn::ops::{synchronised, BatchRows, SumAcross};
        struct OneRank;
        impl SumAcross for OneRank {
            fn sum_across(&self, _values: &mut [f32]) {}
        }
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1., (4, 8, 5, 7), &dev).unwrap();
        for (variant, ok_in_scope) in [
            (gnplus::GnPlusVariant::Faithful, false),
            (gnplus::GnPlusVariant::Deployable, true),
        ] {
            let cfg = NormConfig::default().with_options(gnplus::GnPlusOptions { variant });
            let (vm, bm) = (candle_nn::VarMap::new(), candle_nn::VarMap::new());
            let nb = NormBuilder::new(
                VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
                VarBuilder::from_varmap(&bm, candle_core::DType::F32, &dev),
            );
            let layer = build_norm("gnplus", 8, &cfg, &nb).unwrap();
            assert!(
                layer.forward_t(&x, true).is_ok(),
                "{variant:?} outside a scope"
            );
            let rows = BatchRows { first: 0, total: 4 };
            let in_scope = synchronised(std::sync::Arc::new(OneRank), rows, || {
                layer.forward_t(&x, true)
            });
            assert_eq!(in_scope.is_ok(), ok_in_scope, "{variant:?}: {in_scope:?}");
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let vm = candle_nn::VarMap::new();
        let bm = candle_nn::VarMap::new();
        let dev = candle_core::Device::Cpu;
        let nb = NormBuilder::new(
            VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
            VarBuilder::from_varmap(&bm, candle_core::DType::F32, &dev),
        );
        let err = build_norm("batchnorm", 4, &NormConfig::default(), &nb).unwrap_err();
        let msg = err.to_string();
        for n in NORM_NAMES {
            assert!(msg.contains(n), "{msg}");
        }
    }

    /// [`standardizes_each_map`] names exactly the layers whose globally pooled output is the
    /// same for any two inputs (at the 10 channels of a class map, default config).
    #[test]
    fn constant_after_gap_is_predicted() {
        let dev = candle_core::Device::Cpu;
        let cfg = NormConfig::default();
        let c = 10;
        let xa = Tensor::randn(0f32, 1., (4, c, 5, 7), &dev).unwrap();
        let xb = (Tensor::randn(0f32, 2., (4, c, 5, 7), &dev).unwrap() + 0.5).unwrap();
        for name in NORM_NAMES {
            let (vm, bm) = (candle_nn::VarMap::new(), candle_nn::VarMap::new());
            let nb = NormBuilder::new(
                VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
                VarBuilder::from_varmap(&bm, candle_core::DType::F32, &dev),
            );
            let layer = build_norm(name, c, &cfg, &nb).unwrap();
            let pooled = |x: &Tensor| {
                let y = layer.forward_t(x, true).unwrap();
                y.flatten_from(2).unwrap().mean(2).unwrap()
            };
            let diff = (pooled(&xa) - pooled(&xb))
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(
                diff < 1e-5,
                standardizes_each_map(name, c, &cfg),
                "{name}: pooled outputs differ by {diff}"
            );
        }
        assert!(
            !standardizes_each_map("gn", 64, &cfg),
            "64 channels: 32 groups"
        );
    }

    /// The help texts' list names every registered layer once, in registry order, and each
    /// layer's own name is its entry's.
    #[test]
    fn names_in_words_and_entries_agree_with_the_registry() {
        let words = names_in_words();
        assert!(
            words.starts_with("bn, l2bn, ") && words.ends_with(" or none"),
            "{words}"
        );
        let listed: Vec<_> = words
            .split(&[',', ' '][..])
            .filter(|w| !w.is_empty() && *w != "or")
            .collect();
        assert_eq!(listed, NORM_NAMES);
        let dev = candle_core::Device::Cpu;
        for e in REGISTRY {
            let (vm, bm) = (candle_nn::VarMap::new(), candle_nn::VarMap::new());
            let nb = NormBuilder::new(
                VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
                VarBuilder::from_varmap(&bm, candle_core::DType::F32, &dev),
            );
            let layer = (e.build)(8, &NormConfig::default(), &nb).unwrap();
            assert_eq!(layer.name(), e.name);
            assert_eq!(entry(e.name).unwrap().name, e.name);
        }
    }

    /// A run folder's `config.json` from before each layer owned its settings (flat
    /// `norm_config` fields) loads with the settings it was written with.
    #[test]
    fn old_flat_config_loads() {
        let old = r#"{"eps":0.001,"momentum":0.2,"l2bn_mode":"l2","gn_max_groups":4,
            "gnplus_variant":"faithful","ubn_tau":0.3,"ubn_momentum_cos":0.05,
            "ubn_cos_samples":8,"ubn_fct_mode":"batch_when_below","ubn_bnet_init":"identity",
            "ubn_kernel":5}"#;
        let cfg: NormConfig = serde_json::from_str(old).unwrap();
        let want = NormConfig {
            eps: 0.001,
            momentum: 0.2,
            ..Default::default()
        }
        .with_options(GnOptions { max_groups: 4 })
        .with_options(L2bnOptions { mode: L2bnMode::L2 })
        .with_options(GnPlusOptions {
            variant: GnPlusVariant::Faithful,
        })
        .with_options(UbnOptions {
            tau: 0.3,
            momentum_cos: 0.05,
            cos_samples: 8,
            fct_mode: FctMode::BatchWhenBelow,
            bnet_init: BnetInit::Identity,
            kernel: 5,
        });
        assert_eq!(cfg, want);
        // Partly flat, as a hand-written file may be: the rest keeps its defaults.
        let cfg: NormConfig = serde_json::from_str(r#"{"ubn_tau":0.2}"#).unwrap();
        assert_eq!(cfg.options::<UbnOptions>().tau, 0.2);
        assert_eq!(cfg.options::<UbnOptions>().kernel, 3);
        assert_eq!(cfg.options::<GnOptions>(), GnOptions::default());
        // Written back, it is the current form, which reads back the same.
        let s = serde_json::to_string(&want).unwrap();
        assert!(s.contains("\"ubn\":{") && s.contains("\"tau\":0.3"), "{s}");
        assert!(!s.contains("ubn_tau"), "{s}");
        assert_eq!(serde_json::from_str::<NormConfig>(&s).unwrap(), want);
    }

    /// Each layer's settings sit under its own name; a misspelt setting or layer is refused with
    /// the place it was found, not ignored.
    #[test]
    fn settings_are_keyed_by_layer_and_checked() {
        for e in REGISTRY {
            if let Some(o) = e.options {
                assert_eq!(o.key, e.name);
            }
        }
        let s = serde_json::to_string(&NormConfig::default()).unwrap();
        for key in ["gn", "gnplus", "l2bn", "ubn"] {
            assert!(s.contains(&format!("\"{key}\":{{")), "{s}");
        }
        let err = |json: &str| {
            serde_json::from_str::<NormConfig>(json)
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"ubn": {"tauu": 0.2}}"#);
        assert!(
            e.starts_with("norm_config.ubn: unknown field `tauu`"),
            "{e}"
        );
        let e = err(r#"{"l2bn": {"mode": "l3"}}"#);
        assert!(
            e.starts_with("norm_config.l2bn: unknown variant `l3`"),
            "{e}"
        );
        let e = err(r#"{"ubnn": {}}"#);
        assert!(e.starts_with("norm_config: unknown setting 'ubnn'"), "{e}");
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = NormConfig::default()
            .with_options(L2bnOptions { mode: L2bnMode::L2 })
            .with_options(UbnOptions {
                fct_mode: FctMode::BatchWhenBelow,
                ..Default::default()
            });
        let s = serde_json::to_string(&cfg).unwrap();
        assert!(
            s.contains("\"l2\"") && s.contains("batch_when_below"),
            "{s}"
        );
        let back: NormConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, cfg);
        let partial: NormConfig = serde_json::from_str("{\"eps\":0.001}").unwrap();
        assert_eq!(partial.momentum, 0.1);
    }
}
