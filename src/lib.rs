pub mod audio;
pub mod nn;
