//! File formats at the edges: USTB UFF (HDF5), MUST/PyMUST `.mat` (v5),
//! NumPy `.npy`, PNG, PLUS sequence metafiles (`.mha`/`.nrrd`); and the MUST dataset mapping onto the acquisition.
//! Every file is written through [`output`]: complete or not at all.

pub mod mat;
pub mod metafile;
pub mod must;
pub mod npy;
pub mod output;
pub mod png;
pub mod toml_file;
pub mod uff;
