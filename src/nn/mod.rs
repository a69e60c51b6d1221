//! Neural-network pieces: normalization layers ([`norm`]), our ops with hand-written backward
//! ([`ops`]), the layers the architectures share ([`layers`]), the architectures ([`models`]) and
//! seeded creation of their variables ([`init`]).

pub mod init;
pub mod layers;
pub mod models;
pub mod norm;
pub mod ops;
