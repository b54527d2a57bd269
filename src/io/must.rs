//! MUST / PyMUST datasets in `.mat` files (`RF` and `param`, as in MUST's
//! `PWI_disk.mat`) mapped onto the acquisition model. The time-zero mapping
//! is the one documented in `acquisition` (`Wave::from_must_delays`).

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::mat::{MatData, MatError, MatFile};
use crate::acquisition::{Acquisition, AcquisitionError, ChannelData, Probe, Samples, Wave};

#[derive(Debug, Error)]
pub enum MustError {
    #[error("{file}: {source}")]
    Mat { file: PathBuf, source: MatError },
    #[error("{file}: variable `{field}` {problem}")]
    Field {
        file: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{file}: {source}")]
    Acquisition {
        file: PathBuf,
        source: AcquisitionError,
    },
}

/// MUST's defaults for fields a `param` may leave out (MUST's getparam /
/// dasmtx): sound speed 1540 m/s, t0 0, bandwidth 75 %.
const DEFAULT_C: f64 = 1540.0;
const DEFAULT_BANDWIDTH_PCT: f64 = 75.0;

pub fn read_must(path: &Path) -> Result<ChannelData, MustError> {
    let mat = MatFile::open(path).map_err(|source| MustError::Mat {
        file: path.to_path_buf(),
        source,
    })?;
    from_mat(&mat, path)
}

fn field_err(file: &Path, field: &str, problem: impl Into<String>) -> MustError {
    MustError::Field {
        file: file.to_path_buf(),
        field: field.to_string(),
        problem: problem.into(),
    }
}

pub fn from_mat(mat: &MatFile, file: &Path) -> Result<ChannelData, MustError> {
    let rf = mat.get("RF").ok_or_else(|| {
        field_err(
            file,
            "RF",
            "is missing: expected the RF channel data [samples × elements (× frames)]",
        )
    })?;
    let param = mat.get("param").ok_or_else(|| {
        field_err(
            file,
            "param",
            "is missing: expected MUST's parameter struct",
        )
    })?;
    if !matches!(param.data, MatData::Struct(_)) {
        return Err(field_err(file, "param", "is not a struct"));
    }
    let scalar = |name: &str| -> Result<Option<f64>, MustError> {
        let full = format!("param.{name}");
        match param.field(name) {
            None => Ok(None),
            Some(a) => match a.numeric() {
                Some(v) if v.len() == 1 => {
                    if v[0].is_nan() {
                        Err(field_err(file, &full, "is NaN, expected a number"))
                    } else {
                        Ok(Some(v[0]))
                    }
                }
                Some([]) => Ok(None),
                Some(v) => Err(field_err(
                    file,
                    &full,
                    format!("has {} values, expected a scalar", v.len()),
                )),
                None => Err(field_err(file, &full, "is not numeric")),
            },
        }
    };
    let required_positive = |name: &str, what: &str| -> Result<f64, MustError> {
        match scalar(name)? {
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(field_err(
                file,
                &format!("param.{name}"),
                format!("is {v}, expected a positive {what}"),
            )),
            None => Err(field_err(
                file,
                &format!("param.{name}"),
                format!("is missing, expected the {what}"),
            )),
        }
    };
    let fs = required_positive("fs", "sampling frequency in Hz")?;
    let fc = required_positive("fc", "centre frequency in Hz")?;
    let pitch = required_positive("pitch", "element pitch in metres")?;
    let c = match scalar("c")? {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => {
            return Err(field_err(
                file,
                "param.c",
                format!("is {v}, expected a positive sound speed in m/s"),
            ))
        }
        None => DEFAULT_C,
    };
    let t0 = match scalar("t0")? {
        Some(v) if v.is_finite() => v,
        Some(v) => {
            return Err(field_err(
                file,
                "param.t0",
                format!("is {v}, expected a finite time in seconds"),
            ))
        }
        None => 0.0,
    };
    let bandwidth = match scalar("bandwidth")? {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => {
            return Err(field_err(
                file,
                "param.bandwidth",
                format!("is {v}, expected a positive bandwidth in percent"),
            ))
        }
        None => DEFAULT_BANDWIDTH_PCT,
    };
    let width = match scalar("width")? {
        Some(v) if v.is_finite() && v > 0.0 && v <= pitch => v,
        Some(v) => {
            return Err(field_err(
                file,
                "param.width",
                format!("is {v}, expected a width in (0, pitch = {pitch}] metres"),
            ))
        }
        None => pitch,
    };
    let height = scalar("height")?
        .filter(|h| h.is_finite() && *h > 0.0)
        .unwrap_or(0.0);
    let radius = scalar("radius")?;
    let prf = scalar("PRF")?
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(0.0);

    // RF: MATLAB [samples, elements, frames], column-major, which is already
    // our [frame][wave = 1][channel][sample] with the sample fastest.
    let dims = &rf.dims;
    let (samples, elements, frames) = match dims.as_slice() {
        [s, e] => (*s, *e, 1),
        [s, e, f] => (*s, *e, *f),
        other => return Err(field_err(file, "RF", format!("has shape {other:?}, expected [samples × elements] or [samples × elements × frames]"))),
    };
    let values = rf
        .to_f32()
        .ok_or_else(|| field_err(file, "RF", "is not a real numeric array"))?;
    if let MatData::Numeric { imag: Some(_), .. } = rf.data {
        return Err(field_err(
            file,
            "RF",
            "is complex; expected real RF (IQ .mat files are not read yet)",
        ));
    }
    if values.len() != samples * elements * frames {
        return Err(field_err(
            file,
            "RF",
            format!("holds {} values for shape {dims:?}", values.len()),
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(field_err(file, "RF", "contains NaN or infinite samples"));
    }
    if let Some(n) = scalar("Nelements")? {
        if n as usize != elements || n.fract() != 0.0 {
            return Err(field_err(
                file,
                "param.Nelements",
                format!("is {n}, but RF has {elements} element columns"),
            ));
        }
    }

    let probe = match radius {
        Some(r) if r.is_finite() && r > 0.0 => {
            Probe::convex_must(elements, pitch, r, width, height)
        }
        Some(r) if r.is_finite() => {
            return Err(field_err(
                file,
                "param.radius",
                format!("is {r}, expected a positive radius or Inf for a linear array"),
            ))
        }
        _ => Probe::linear(elements, pitch, width, height),
    };
    let delays: Vec<f64> = match param.field("TXdelay") {
        None => vec![0.0; elements],
        Some(a) => {
            let v = a
                .numeric()
                .ok_or_else(|| field_err(file, "param.TXdelay", "is not numeric"))?;
            if v.len() != elements {
                // MUST: one row per transmit; a single plane wave is what
                // these files hold, so several rows are not guessed at.
                return Err(field_err(
                    file,
                    "param.TXdelay",
                    format!(
                        "has {} values, expected one per element ({elements})",
                        v.len()
                    ),
                ));
            }
            v.to_vec()
        }
    };
    let wave = Wave::from_must_delays(&probe, &delays, c, None).map_err(|source| {
        MustError::Acquisition {
            file: file.to_path_buf(),
            source,
        }
    })?;
    let acquisition = Acquisition {
        probe,
        waves: vec![wave],
        sampling_frequency: fs,
        initial_time: t0,
        modulation_frequency: 0.0,
        center_frequency: fc,
        bandwidth: bandwidth / 100.0,
        sound_speed: c,
        prf,
    };
    let data = ChannelData {
        acquisition,
        frames,
        waves: 1,
        channels: elements,
        samples,
        data: Samples::Rf(values),
    };
    data.validate().map_err(|source| MustError::Acquisition {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(data)
}
