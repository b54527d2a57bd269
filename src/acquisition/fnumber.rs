// TEMPORARY STUB
pub fn must_auto_fnumber(_w: f64, _fc: f64, _bw: f64, _c: f64) -> f64 { 1.0 }
