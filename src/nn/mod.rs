//! Neural-network pieces: normalization layers ([`norm`]), our ops with hand-written backward
//! ([`ops`]), the layers the architectures share ([`layers`]), the architectures ([`models`]) and
//! seeded creation of their variables ([`init`]).

/// Declares each entry's module and lists its `ENTRY` in `REGISTRY`, in order: a layer or an
/// architecture is its file plus its name in such a list (docs/architecture.md, "Adding a norm").
macro_rules! registry {
    ($entry:ty; $($module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// The registry, in the order help texts and comparisons list its entries.
        pub const REGISTRY: &[$entry] = &[$($module::ENTRY),*];
    };
}
pub(crate) use registry;

/// The `name` of every entry of a registry, in order, as a constant array.
macro_rules! names_of {
    ($registry:expr) => {{
        let mut names = [""; $registry.len()];
        let mut i = 0;
        while i < $registry.len() {
            names[i] = $registry[i].name;
            i += 1;
        }
        names
    }};
}
pub(crate) use names_of;

/// A registry entry: something with a registry name.
pub(crate) trait Registered: 'static {
    fn registry_name(&self) -> &'static str;
}

/// The entry of `registry` named `name`, or the error naming the valid ones (`what`: "norm",
/// "model").
pub(crate) fn lookup<E: Registered>(
    registry: &'static [E],
    what: &'static str,
    name: &str,
    names: &'static [&'static str],
) -> Result<&'static E, crate::error::UnknownName> {
    registry
        .iter()
        .find(|e| e.registry_name() == name)
        .ok_or_else(|| crate::error::UnknownName::new(what, name, names))
}

pub mod init;
pub mod layers;
pub mod models;
pub mod norm;
pub mod ops;
pub mod options;
