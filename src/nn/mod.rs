//! Neural-network building blocks shared by the models (`design.md` § Modules).
pub mod ops;
