//! Neural-network building blocks on candle (design.md, "Modules").

pub mod norm;
