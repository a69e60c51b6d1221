pub mod audio;
pub mod dataset;
pub mod synth;
