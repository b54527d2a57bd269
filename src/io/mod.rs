//! File formats at the edges: USTB UFF (HDF5), MUST/PyMUST `.mat` (v5),
//! NumPy `.npy`, PNG; and the MUST dataset mapping onto the acquisition.

pub mod mat;
pub mod must;
pub mod npy;
pub mod png;
pub mod toml_file;
pub mod uff;
