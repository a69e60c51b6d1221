pub mod audio;
pub mod export;
pub mod nn;
