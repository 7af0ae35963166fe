//! Backends execute plans; they implement ops, never the network.

pub mod cpu;
pub mod cuda;
mod dtype;

pub use dtype::Dtype;

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

/// Where and in which precision a model runs. A [`Device`] converts into the target
/// with that device's default dtype (f32 on the CPU, f16 on CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// The device.
    pub device: Device,
    /// The storage type; None for the device's default.
    pub dtype: Option<Dtype>,
}

impl Target {
    /// `device` in `dtype` (None: the device's default).
    pub fn new(device: Device, dtype: Option<Dtype>) -> Self {
        Target { device, dtype }
    }

    /// The dtype this target runs in.
    pub fn dtype(&self) -> Dtype {
        self.dtype.unwrap_or(match self.device {
            Device::Cpu => Dtype::F32,
            Device::Cuda(_) => Dtype::F16,
        })
    }
}

impl From<Device> for Target {
    fn from(device: Device) -> Self {
        Target::new(device, None)
    }
}

/// Runs plans on one device.
pub trait Backend: Send + Sync {
    /// The device this backend drives.
    fn device(&self) -> Device;

    /// The storage type of weights and activations.
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    /// Called once with the loaded parameters, before any `execute` (a GPU backend
    /// uploads them here, so a model that does not fit fails at load).
    fn prepare(&self, _params: &ParamStore) -> Result<()> {
        Ok(())
    }

    /// Into how many parts a call of `rows` sequences without a cache should be split,
    /// each part run by one thread with its own plan (throughput mode); 1 keeps the call
    /// whole, each op using every thread.
    fn throughput_parts(&self, _rows: usize) -> usize {
        1
    }

    /// Sets aside memory for `plan` (the largest shape a caller will run), so later
    /// calls up to that size allocate nothing; a backend that prepares weights lazily
    /// (the CPU's packed linears) prepares `plan`'s here.
    fn reserve(&self, _plan: &Plan, _params: &ParamStore) -> Result<()> {
        Ok(())
    }

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

/// The backend for `target`.
pub fn create(target: impl Into<Target>) -> Result<Box<dyn Backend>> {
    let target = target.into();
    match (target.device, target.dtype()) {
        (Device::Cpu, dtype @ (Dtype::F32 | Dtype::Bf16 | Dtype::Int8)) => {
            Ok(Box::new(cpu::CpuBackend::new(dtype)))
        }
        (Device::Cpu, other) => Err(Error::Unsupported(format!(
            "dtype {other} is not available on the CPU; use f32, bf16 or int8"
        ))),
        // The CUDA kernels exist in f32 and f16 only; bf16 and int8 are CPU paths for now.
        (Device::Cuda(_), dtype @ (Dtype::Bf16 | Dtype::Int8)) => Err(Error::Unsupported(format!(
            "dtype {dtype} is only available on the CPU for now; use f16 or f32 on CUDA"
        ))),
        (Device::Cuda(n), dtype) => cuda_backend(n, dtype),
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize, dtype: Dtype) -> Result<Box<dyn Backend>> {
    let gpu = cuda::CudaGpu::new(ordinal)?;
    Ok(Box::new(cuda::GpuBackend::new(
        gpu,
        Device::Cuda(ordinal),
        dtype,
    )))
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(_ordinal: usize, _dtype: Dtype) -> Result<Box<dyn Backend>> {
    Err(Error::Unsupported(
        "this build of bertrt has no CUDA backend: rebuild with `--features cuda` \
         (it needs nvcc; see the README), or use --device cpu"
            .into(),
    ))
}
