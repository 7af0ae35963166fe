//! Backends execute plans; they implement ops, never the network.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use std::fmt;
use std::str::FromStr;

use crate::batch::Batch;
use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::graph::Plan;
use crate::tensor::Tensor;
use crate::weights::ParamStore;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU backend (f32).
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = Error;

    /// Parses `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "unknown device {s:?}; expected cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Runs plans on one device.
pub trait Backend: Send + Sync {
    /// The device this backend drives.
    fn device(&self) -> Device;

    /// Executes `plan` on `batch` and returns its outputs in declaration order.
    /// With a cache, attention reads and extends it.
    fn execute(
        &self,
        plan: &Plan,
        params: &ParamStore,
        batch: &Batch,
        cache: Option<&mut KvCache>,
    ) -> Result<Vec<Tensor>>;
}

/// The backend for `device`.
pub fn create(device: Device) -> Result<Box<dyn Backend>> {
    match device {
        Device::Cpu => Ok(Box::new(cpu::CpuBackend::default())),
        Device::Cuda(_) => Err(Error::Unsupported(
            "the CUDA backend is not implemented yet; use --device cpu".into(),
        )),
    }
}
