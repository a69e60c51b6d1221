//! Neural-network pieces: normalization layers ([`norm`]), our ops with hand-written backward
//! ([`ops`]), the layers the architectures share ([`layers`]) and the architectures ([`models`]).

pub mod init;
pub mod layers;
pub mod models;
pub mod norm;
pub mod ops;
