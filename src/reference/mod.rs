//! CPU twins of the GPU stages, one module per stage with the stage's
//! name and loops shaped like its shader, plus the f64 numerics they are
//! checked against (`filter`: scipy-exact Butterworth and filtfilt;
//! `bmode`: MUST's grey levels).

pub mod bmode;
pub mod das;
pub mod demodulate;
pub mod detect;
pub mod filter;
pub mod scan_convert;
pub mod simulate;
